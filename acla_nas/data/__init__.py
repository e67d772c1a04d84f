"""data: images in, patches out.

Decoding and the image byte cache (``images``), the data sources (the ``sources`` package, one
module per kind: embedded photographs, folders of HR images, paired HR/LR folders, generated
images), generated self-similar images (``synthetic``) and patch sampling (``patches``).
May import: ``core``, ``runtime``, ``tasks``.
"""

from __future__ import annotations
