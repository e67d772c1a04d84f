"""core: what every other package stands on, and nothing else.

Errors (one-line user errors with file and field), value checks, the one ``Registry`` type behind
every extension point, the trust model that decides which code a file may make acla-nas import
(with the alias table of import paths that moved), atomic file writes and the package version.
May import: the standard library and third-party packages only; no other acla_nas package.
"""

from __future__ import annotations
