"""data: images in, patches out.

Decoding, the image byte cache and the data sources (embedded photographs, folders of HR images,
paired HR/LR folders; ``sources``), generated self-similar images (``synthetic``) and patch
sampling. May import: ``core``, ``runtime``, ``tasks``.
"""

from __future__ import annotations
