"""train: training and using one network.

``trainer`` (the loop: seeded, resumable, atomic checkpoints, non-finite loss detected),
``retrain`` (an Arch trained from scratch into a model folder) and ``inference`` (model files,
tiled restoration). May import: ``core`` ... ``runs``.
"""

from __future__ import annotations
