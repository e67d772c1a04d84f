"""The ``acla-nas`` command line: discovers the verbs in :mod:`acla_nas.cli.commands`.

User errors (:class:`acla_nas.core.errors.UserError`) become one line on stderr and exit code 2.
Every verb takes ``--allow-import PKG[,PKG]``: the only way (with ``ACLA_NAS_ALLOW_IMPORT``) to
let a file name code outside the registries (see :mod:`acla_nas.core.trust`).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from acla_nas.cli import commands
from acla_nas.core.errors import ReplicatedError, UserError
from acla_nas.core.outputs import os_error_line
from acla_nas.core.quiet import quiet_logger, show_file_warnings
from acla_nas.core.trust import ENV_VAR, FLAG, allow_imports, parse_prefixes
from acla_nas.core.version import __version__


def _verbs() -> list:
    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return mods


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 (argparse already exits 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation that failed despite the up-front estimates (they are lower bounds)."""
    text = str(exc).lower()
    return (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or "can't allocate memory" in text
        or "out of memory" in text
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="acla-nas", description="Search, export, retrain and inspect ACLA placements.")
    parser.add_argument("--version", action="version", version=f"acla-nas {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for mod in _verbs():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.add_argument(
            FLAG,
            action="append",
            default=[],
            metavar="PKG[,PKG]",
            dest="allow_import",
            help=f"let files name code from these modules (package.module:factory / :Class); also {ENV_VAR}",
        )
        if not any("--verbose" in a.option_strings for a in p._actions):
            p.add_argument(
                "--verbose", action="store_true", help="also show the warnings raised while reading your files"
            )
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    show_file_warnings(bool(getattr(args, "verbose", False)))
    try:
        granted = [p for text in args.allow_import for p in parse_prefixes(text, FLAG)]
        with allow_imports(granted), quiet_logger("optuna"):  # Optuna's per-trial INFO lines
            return int(args._run(args) or 0)
    except UserError as exc:
        if not isinstance(exc, ReplicatedError):  # under torchrun, rank 0 prints the shared error
            print(f"acla-nas {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output path nothing caught earlier (full disk, read-only folder, ...)
        print(f"acla-nas {args.verb}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        print(
            f"acla-nas {args.verb}: error: out of memory ({first}); lower the batch size, the patch or tile size, "
            "or the backbone's size",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"acla-nas {args.verb}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
