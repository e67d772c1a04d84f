"""Hostile values in every numeric field of every file kind, and hostile model-file payloads.

Generalises the hand-written rows of test_malformed_inputs.py: hypothesis puts huge integers
(up to 6000 digits), huge or tiny exponents (``1e999999999``), non-finite floats, Unicode digits,
fractions, bools and deeply nested lists or maps into each numeric leaf of a space, a strategy
preset and an arch file, as raw YAML text, and checks that reading the file either succeeds or
raises a one-line :class:`UserError` -- never another exception and never a hang (an alarm turns
a hang into a failure). The payload fuzz does the same for ``model.pt`` files: any tensor layout,
device, dtype or value, and any non-tensor entry, loads or is refused in one line.
"""

from __future__ import annotations

import io
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acla_nas.core.errors import UserError
from acla_nas.nn.arch import Arch, load_arch_file
from acla_nas.nn.network import build
from acla_nas.search.config import load_strategy_file
from acla_nas.space import SearchSpace
from acla_nas.train.model_file import load_model, load_model_file, save_model_file

SENTINEL = "__HOSTILE_VALUE__"
SPACE = {
    "backbone": {"name": "edsr", "kwargs": {"n_feats": 4, "n_resblocks": 2, "res_scale": 1.0}},
    "task": {"name": "sr", "scale": 2},
    "eval": {"input_size": [16, 16]},
    "keys": [0, 2, 4],
    "scopes": [1, "all"],
    "acla": {"tau": 1.0, "gate_init": 2.0, "init_radius": 1.0, "key_penalty": 0.0, "offset_lr_mult": 1.0},
    "constraints": {"max_modules": 2, "max_flops": 1.5, "max_params": "+50%"},
}
SYNTHETIC_SPACE = {
    **SPACE,
    "data": {"kind": "synthetic", "seed": 0, "size": 64, "n_train": 2, "n_val": 1, "n_test": 1, "jitter": 0.3},
}
PRESETS = {
    "random": {"strategy": "random", "trials": 2, "seed": 0, "supernet": {"steps": 2, "batch": 2, "patch": 24}},
    "darts": {"strategy": "darts", "options": {"steps": 400, "batch": 2, "patch": 24, "w_lr": 0.001, "tau_end": 0.5}},
    "evolution": {"strategy": "evolution", "trials": 2, "options": {"population": 10, "sample_size": 4}},
}
ARCH = {
    "backbone": {"name": "edsr", "kwargs": {"n_feats": 4, "n_resblocks": 1}},
    "task": {"name": "sr", "scale": 2},
    "modules": {"body.0": {"keys": 2, "scope": 1}},
    "train": {"steps": 2, "batch": 2, "patch": 24, "lr": 0.001, "seed": 0, "val_patches": 2},
}


def _leaves(doc: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths of the numeric leaves (ints and floats, not bools) of a document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, (*path, i))
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        yield path


def _text_with(doc: dict, path: tuple, raw: str) -> str:
    """``doc`` as YAML with the leaf at ``path`` replaced by the raw YAML text ``raw``."""
    doc = yaml.safe_load(yaml.safe_dump(doc))
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = SENTINEL
    return yaml.safe_dump(doc, sort_keys=False, width=10**9).replace(SENTINEL, raw)


def _hostile() -> st.SearchStrategy[str]:
    digits = st.integers(1, 6000)
    return st.one_of(
        digits.map(lambda n: "9" * n),
        digits.map(lambda n: "-" + "1" * n),
        st.integers(-999_999_999, 999_999_999).map(lambda e: f"1e{e}"),
        st.integers(-999_999_999, 999_999_999).map(lambda e: f'"1e{e}"'),
        st.sampled_from([".inf", "-.inf", ".nan", "-0.0", "1.0e+400", "true", "null", "0x1F", "0o17", "1_000"]),
        st.sampled_from(['"previous\u00b2"', '"\u00b9\u00b2"', '"\u0663"', '"1/3"', '"+10%"', '"1e9999K"', '"5x"']),
        st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
        st.integers(1, 3000).map(lambda n: "{a: " * n + "1" + "}" * n),
    )


@contextmanager
def _no_hang(seconds: int = 60) -> Iterator[None]:
    """A hang becomes a failure (the hostile value must be refused, not computed)."""

    def alarm(*_: Any) -> None:
        raise TimeoutError(f"reading the file took over {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _only_user_errors(read: Callable[[Path], Any], file: Path) -> None:
    with _no_hang():
        try:
            read(file)
        except UserError as exc:
            text = str(exc)
            assert "\n" not in text and len(text) <= 500, text
            assert str(file) in text, text  # the line names the file


KINDS: dict[str, tuple[dict, Callable[[Path], Any]]] = {
    "space": (SPACE, SearchSpace.from_yaml),
    "synthetic space": (SYNTHETIC_SPACE, SearchSpace.from_yaml),
    **{f"{k} preset": (v, load_strategy_file) for k, v in PRESETS.items()},
    "arch": (ARCH, load_arch_file),
}
FIELDS = [(kind, path) for kind, (doc, _) in KINDS.items() for path in _leaves(doc)]


def test_every_file_kind_has_numeric_fields_to_fuzz():
    assert len(FIELDS) >= 30 and {k for k, _ in FIELDS} == set(KINDS)


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(FIELDS), raw=_hostile())
def test_a_hostile_value_in_any_numeric_field_is_read_or_refused_in_one_line(tmp_path: Path, field, raw: str):
    kind, path = field
    doc, read = KINDS[kind]
    file = tmp_path / "hostile.yaml"
    file.write_text(_text_with(doc, path, raw))
    _only_user_errors(read, file)


# -- model files ---------------------------------------------------------------------------------

TINY = {"backbone": {"name": "edsr", "kwargs": {"n_feats": 4, "n_resblocks": 1}}, "task": {"name": "sr", "scale": 2}}


@pytest.fixture(scope="module")
def good_payload(tmp_path_factory) -> dict:
    arch = Arch.from_dict(TINY)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model_file(path, build(arch), arch.to_dict(), arch.task)
    return torch.load(path, weights_only=True)


def _tensors() -> st.SearchStrategy[Any]:
    dtypes = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.bool]

    @st.composite
    def tensor(draw: Any) -> torch.Tensor:
        shape = tuple(draw(st.lists(st.integers(0, 3), max_size=4)))
        t = torch.randn(shape)
        fill = draw(st.sampled_from(["finite", "nan", "inf", "huge"]))
        if fill != "finite" and t.numel():
            t.view(-1)[0] = {"nan": float("nan"), "inf": float("inf"), "huge": 3e38}[fill]
        kind = draw(st.sampled_from(["plain", "meta", "sparse", "complex", "quantized", "dtype", "strided_view"]))
        if kind == "meta":
            return torch.empty(shape, device="meta")
        if kind == "sparse" and t.dim() >= 1:
            return t.to_sparse()
        if kind == "complex":
            return t.to(torch.complex64)
        if kind == "quantized":
            return torch.quantize_per_tensor(torch.nan_to_num(t), 0.1, 0, torch.qint8)
        if kind == "dtype":
            return t.to(draw(st.sampled_from(dtypes)))
        if kind == "strided_view" and t.dim() >= 2:
            return t.transpose(0, 1)
        return t

    junk = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3))
    return st.one_of(tensor(), junk)


@settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    replace=st.dictionaries(st.sampled_from(["backbone.head.weight", "backbone.head.bias", "extra"]), _tensors()),
    top=st.dictionaries(
        st.sampled_from(["version", "arch", "task", "metrics", "format"]),
        st.one_of(st.none(), st.integers(-2, 3), st.text(max_size=4), st.just({"name": "sr"})),
        max_size=2,
    ),
)
def test_any_model_file_payload_loads_or_is_refused_in_one_line(tmp_path: Path, good_payload: dict, replace, top):
    payload = {**good_payload, **top, "state_dict": {**good_payload["state_dict"], **replace}}
    buf = io.BytesIO()
    try:
        torch.save(payload, buf)
    except Exception:  # noqa: BLE001 - torch cannot write this payload at all: nothing to read back
        return
    file = tmp_path / "model.pt"
    file.write_bytes(buf.getvalue())
    _only_user_errors(load_model_file, file)
    _only_user_errors(load_model, file)
