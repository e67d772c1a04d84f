"""search.table: a fully tabulated space, built (``build``) and read back (``lookup``).

Every architecture trained stand-alone, so any strategy is benchmarked exactly and in seconds
through ``evaluator: table``. May import: ``core`` ... ``space``.
"""

from __future__ import annotations
