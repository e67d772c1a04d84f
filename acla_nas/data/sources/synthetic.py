"""``{kind: synthetic, ...}``: generated self-similar images (:mod:`acla_nas.data.synthetic`),
no file behind them; every split is drawn by seed, so it is the same on every machine.
"""

from __future__ import annotations

from acla_nas.data.sources.base import SPLITS, DataSource, ImageRef, SyntheticRef
from acla_nas.data.sources.registry import register_source
from acla_nas.data.synthetic import parse_params


def synthetic_source(spec: dict) -> DataSource:
    """Generated self-similar images (:mod:`acla_nas.data.synthetic`); splits by seed."""
    params = parse_params(spec)
    splits: dict[str, list[ImageRef | SyntheticRef]] = {
        s: [SyntheticRef(params, s, i) for i in range(params.count(s))] for s in SPLITS
    }
    return DataSource(f"synthetic(seed {params.seed})", dict(spec), splits)


def _check_synthetic(spec: dict) -> None:
    parse_params(spec)


register_source(
    "synthetic",
    (
        "seed",
        "size",
        "n_train",
        "n_val",
        "n_test",
        "periods",
        "lattices",
        "motifs",
        "jitter",
        "brightness",
        "supersample",
        "geometry",
    ),
    check=_check_synthetic,
)(lambda spec, scale: synthetic_source(spec))

__all__ = ["synthetic_source"]
