"""runs: what a run leaves on disk.

The run directory (every path of a run), the trajectory table (one row per trial or DARTS step,
the same columns for every strategy), Pareto dominance and the "same run?" check that refuses to
resume a directory with another configuration. May import: ``core`` ... ``nn``.
"""

from __future__ import annotations
