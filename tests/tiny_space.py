"""The smallest search space the search, storage and training tests share (EDSR 8x3, SR x2)."""

from __future__ import annotations

TINY_SPACE: dict = {
    "backbone": {"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 3}},
    "task": {"name": "sr", "scale": 2},
    "data": {"kind": "embedded"},
    "eval": {"input_size": [16, 16]},
    "sites": "all",
    "keys": [0, 2, 4],
    "scopes": [1, "all"],
    "constraints": {"max_modules": 2},
}
