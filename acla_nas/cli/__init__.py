"""cli: the command line: ``main`` (the ``acla-nas`` entry point) and one module per verb in
``commands``. Nothing else in the package imports it. May import: everything.
"""

from __future__ import annotations
