"""Image sources: the ``data:`` section of a space file (or :func:`make_source`) -> named splits
of lazily decoded images.

One module per built-in kind, each registering itself in :data:`DATA_SOURCES`, which discovers
the modules of this package on first use (as backbones and strategies do): ``embedded`` (the
default: photographs shipped inside scikit-image), ``folder`` (HR images, degraded by the task),
``paired`` (HR/LR folders), ``synthetic`` (generated self-similar images). A new built-in kind is
one module here plus its test; an installed plug-in registers under the ``acla_nas.data_sources``
entry-point group. ``base`` holds what every source is made of, ``registry`` the registry,
:func:`make_source` and :func:`source_for_dir`.
"""

from __future__ import annotations

from acla_nas.data.sources.base import (
    SPLITS,
    DataSource,
    ImageList,
    ImageRef,
    SyntheticRef,
    check_min_side,
    list_images,
    split_by_fraction,
)
from acla_nas.data.sources.embedded import (
    EMBEDDED_SETS,
    EMBEDDED_SPLIT,
    TEXTURE_FILES,
    TEXTURE_QUADRANTS,
    embedded_source,
)
from acla_nas.data.sources.folder import folder_source
from acla_nas.data.sources.paired import find_pairs, paired_source
from acla_nas.data.sources.registry import (
    DATA_SOURCES,
    SourceKind,
    data_kind,
    make_source,
    register_source,
    source_for_dir,
)
from acla_nas.data.sources.synthetic import synthetic_source

__all__ = [
    "DATA_SOURCES",
    "DataSource",
    "EMBEDDED_SETS",
    "EMBEDDED_SPLIT",
    "ImageList",
    "ImageRef",
    "SPLITS",
    "SourceKind",
    "SyntheticRef",
    "TEXTURE_FILES",
    "TEXTURE_QUADRANTS",
    "check_min_side",
    "data_kind",
    "embedded_source",
    "find_pairs",
    "folder_source",
    "list_images",
    "make_source",
    "paired_source",
    "register_source",
    "source_for_dir",
    "split_by_fraction",
    "synthetic_source",
]
