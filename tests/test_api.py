"""docs/api.md runs as written, and importing acla_nas stays light and leaves logging alone.

The page is a notebook: its ```` ```python ```` cells run in order in one namespace, in an empty
directory; the ```` ```output ```` block after a cell is compared with what the cell printed by
shape, with the user guide's rules (:func:`tests.test_user_guide.shape_mismatch`: numbers masked,
every line shown must appear, in order).
"""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_user_guide import FENCE, ROOT, shape_mismatch

PAGE = ROOT / "docs" / "api.md"


def cells(text: str) -> list[tuple[str, list[str] | None]]:
    """(code, expected output lines or None) for every Python cell of the page."""
    out: list[tuple[str, list[str] | None]] = []
    for m in FENCE.finditer(text):
        info, body = m.group(1).strip(), m.group(2)
        if info == "python":
            out.append((body, None))
        elif info == "output" and out:
            out[-1] = (out[-1][0], body.splitlines())
    return out


def test_the_api_page_runs_as_shown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACLA_NAS_PROGRESS_SECONDS", "3600")
    page = cells(PAGE.read_text())
    assert len(page) >= 4 and sum(expected is not None for _, expected in page) >= 3
    import optuna  # noqa: F401 - Optuna sets its own logger's level when imported

    optuna_log = logging.getLogger("optuna")
    before = optuna_log.level
    namespace: dict = {"__name__": "__notebook__"}
    for i, (code, expected) in enumerate(page):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(code, f"{PAGE}:cell{i}", "exec"), namespace)  # noqa: S102 - the page's own cells
        if expected is not None:
            why = shape_mismatch(expected, buf.getvalue().splitlines())
            assert why is None, f"cell {i}: {why}; it printed:\n{buf.getvalue()}"
    assert optuna_log.level == before  # quieted during the search only
    run = namespace["run"]
    assert isinstance(run, __import__("acla_nas").SearchRun) and run.paths["log"].is_file()
    from acla_nas.nn.backbones.registry import _CALLER

    assert "mynet" not in _CALLER  # the notebook's factory was known for the calls only


def test_importing_the_package_is_light_and_changes_no_logging():
    code = (
        "import logging, sys; import optuna; lvl = logging.getLogger('optuna').level; "
        "import acla_nas; light = not any(m in sys.modules for m in ('torch', 'pandas', 'acla_nas.search.run')); "
        "import acla_nas.search.strategies.optuna_loop, acla_nas.search.strategies.tpe; "
        "print(light, logging.getLogger('optuna').level == lvl, callable(acla_nas.run_search))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["True", "True", "True"], out.stderr


def test_the_package_root_exports_the_documented_names():
    import acla_nas

    for name in ("run_search", "export_run", "train_arch", "evaluate", "SearchRun", "TrainRun", "Evaluation"):
        assert name in acla_nas.__all__ and name in PAGE.read_text() or name in ("SearchRun", "TrainRun", "Evaluation")
        assert getattr(acla_nas, name) is getattr(__import__("acla_nas.api", fromlist=[name]), name)


def test_a_notebook_factory_may_not_shadow_a_registered_backbone():
    from acla_nas.core.errors import UserError
    from acla_nas.nn.backbones.registry import caller_backbones

    with pytest.raises(UserError, match="'edsr' is a registered backbone"):
        with caller_backbones({"edsr": lambda: None}):
            pass
    with pytest.raises(UserError, match="expected a factory"):
        with caller_backbones({"mine": 3}):
            pass


def test_a_different_space_in_the_same_directory_is_refused(tmp_path):
    import acla_nas
    from acla_nas.core.errors import UserError
    from tests.tiny_space import TINY_SPACE

    (tmp_path / "space.yaml").write_text("backbone: {name: edsr}\n")
    with pytest.raises(UserError, match="holds another search space"):
        acla_nas.run_search(TINY_SPACE, "random", tmp_path, device="cpu")
    assert Path(tmp_path / "space.yaml").read_text() == "backbone: {name: edsr}\n"
