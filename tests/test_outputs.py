"""Output paths (acla_nas.core.outputs), captured file warnings (core.quiet) and the one YAML
reader's limits (core.yaml_io), tested where a malformed-input row cannot reach: a full disk,
Pillow's own error on one, --overwrite, re-running a verb over its own results."""

from __future__ import annotations

import errno
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from acla_nas.cli.main import main
from acla_nas.core.errors import UserError
from acla_nas.core.outputs import os_error_line, output_dir, output_file, refuse_foreign_results, writing
from acla_nas.core.quiet import LOG, captured_warnings
from acla_nas.core.yaml_io import MAX_DEPTH, load_yaml_text
from acla_nas.data.images import save_image
from acla_nas.nn.arch import Arch
from acla_nas.nn.network import build
from acla_nas.train.model_file import save_model_file


def test_a_full_disk_is_one_line_naming_the_path(tmp_path: Path):
    target = tmp_path / "out.png"
    with pytest.raises(UserError, match="out.png: cannot write \\(no space left on the device\\)"):
        with writing(target):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
    # Pillow raises its own AttributeError when its encoder hits a full disk
    with pytest.raises(UserError, match="cannot write \\(no space left"):
        with writing(target):
            raise AttributeError("'NoneType' object has no attribute 'write'")
    with pytest.raises(AttributeError, match="other"):  # anything else is not hidden
        with writing(target):
            raise AttributeError("other")


def test_os_errors_nothing_caught_become_one_line():
    assert (
        os_error_line(OSError(errno.EROFS, "Read-only file system", "/x/y"))
        == "/x/y: cannot write (read-only file system)"
    )
    assert "a file is in the way" in os_error_line(FileExistsError(errno.EEXIST, "File exists", "/x"))


def test_save_image_on_a_full_disk(tmp_path: Path, monkeypatch):
    from PIL import Image

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(UserError, match="cannot write"):
        save_image(torch.rand(3, 8, 8), tmp_path / "a.png")


def test_output_paths(tmp_path: Path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        output_dir(f)
    with pytest.raises(UserError, match="below the file"):
        output_dir(f / "sub", create=False)
    assert not (tmp_path / "new").exists() and output_dir(tmp_path / "new", create=False) == tmp_path / "new"
    assert output_dir(tmp_path / "a" / "b").is_dir()
    with pytest.raises(UserError, match="--overwrite"):
        output_file(f, "OUT")
    assert output_file(f, "OUT", overwrite=True) == f
    with pytest.raises(UserError, match="folder"):
        output_file(tmp_path, "OUT", overwrite=True)


def test_foreign_results_are_refused_own_ones_are_not(tmp_path: Path):
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="model.pt, not written by me"):
        refuse_foreign_results(tmp_path, False, ours=lambda d: False, what="me")
    refuse_foreign_results(tmp_path, False, ours=lambda d: True, what="me")
    refuse_foreign_results(tmp_path, True, ours=lambda d: False, what="me")
    refuse_foreign_results(tmp_path / "empty", False, ours=lambda d: False, what="me")


def test_warnings_while_reading_are_logged_not_printed(capsys, caplog):
    with caplog.at_level(logging.INFO, logger=LOG.name):
        LOG.propagate = True
        with captured_warnings("f.pt"):
            warnings.warn("legacy pickle", UserWarning, stacklevel=1)
    assert "f.pt: UserWarning: legacy pickle" in caplog.text
    assert capsys.readouterr().err == ""


def test_yaml_limits():
    assert load_yaml_text("a: &x [1]\nb: *x\nc: {<<: {d: 1}}") == {"a": [1], "b": [1], "c": {"d": 1}}
    with pytest.raises(UserError, match="duplicate key 'a'"):
        load_yaml_text("a: 1\nb: {a: 2}\na: 3", "f.yaml")
    with pytest.raises(UserError, match="nested more than"):
        load_yaml_text("x: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    load_yaml_text("x: " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2))
    with pytest.raises(UserError, match="digits"):
        load_yaml_text("x: " + "1" * 31)
    assert load_yaml_text("x: 1e999999999") == {"x": "1e999999999"}  # YAML 1.1: a string, not a float


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    arch = Arch.from_dict(
        {
            "backbone": {"name": "edsr", "kwargs": {"n_feats": 4, "n_resblocks": 1}},
            "task": {"name": "denoise", "sigma": 25},
        }
    )
    save_model_file(tmp_path / "model.pt", build(arch), arch.to_dict(), arch.task)
    return tmp_path / "model.pt"


def test_restore_replaces_an_existing_output_only_with_overwrite(tmp_path: Path, model: Path, capsys):
    from acla_nas.data.images import save_image as save

    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    save(torch.rand(3, 20, 20), src)
    dst.write_bytes(b"precious")
    assert main(["restore", str(model), str(src), str(dst)]) == 2
    assert dst.read_bytes() == b"precious" and "--overwrite" in capsys.readouterr().err
    assert main(["restore", str(model), str(src), str(dst), "--overwrite"]) == 0
    assert dst.read_bytes() != b"precious"


def test_verbose_shows_what_a_file_warned(tmp_path: Path, model: Path):
    """Loading quantized tensors makes torch warn (TypedStorage): one error line without
    --verbose, the warning as a note before it with --verbose."""
    payload = torch.load(model, weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][key] = torch.quantize_per_tensor(payload["state_dict"][key], 0.1, 0, torch.qint8)
    bad = tmp_path / "quantized.pt"
    torch.save(payload, bad)
    # fresh processes: torch warns about TypedStorage once per process
    run = [sys.executable, "-m", "acla_nas", "evaluate", str(bad)]
    quiet_proc = subprocess.run(run, capture_output=True, text=True, timeout=300)
    loud_proc = subprocess.run([*run, "--verbose"], capture_output=True, text=True, timeout=300)
    assert quiet_proc.returncode == loud_proc.returncode == 2
    quiet, loud = quiet_proc.stderr.strip().splitlines(), loud_proc.stderr.strip().splitlines()
    assert len(quiet) == 1 and "quantized" in quiet[0]
    assert len(loud) > 1 and any("note:" in line and "quantized.pt" in line for line in loud[:-1])
