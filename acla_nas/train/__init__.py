"""train: training and using one network.

``config`` (TrainConfig: what defines a run, checked, and the one place it is built),
``trainer`` (the loop: seeded, non-finite loss detected), ``checkpoint`` (seeds, RNG states,
atomic checkpoints and resume), ``evaluate`` (full-image PSNR/SSIM with the task's protocol),
``inference`` (tiled restoration), ``model_file`` (``model.pt``: written, read, checked) and
``retrain`` (an Arch trained from scratch into a model folder). May import: ``core`` ... ``runs``.
"""

from __future__ import annotations
