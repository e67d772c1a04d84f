"""``acla-nas spaces [FILE...]``: list the shipped search spaces, or validate the given files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from acla_nas.core.errors import UserError
from acla_nas.core.overrides import Override, add_set_flag

NAME = "spaces"
HELP = "list the shipped search spaces, or validate search-space files"
DESCRIPTION = (
    "Without files: list the search spaces in search_spaces/ (of the current directory and of the "
    "acla-nas checkout) with backbone, task, sites, budgets, scopes and size. With files: validate "
    "each, print OK and its size, or one line naming the file and field that is wrong (exit 2)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="*", metavar="FILE", help="search-space YAML files (or folders of them) to validate"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print each space's summary and site table")
    add_set_flag(parser, "each space file (to check a variant before searching it)")


def shipped_dirs() -> list[Path]:
    """``search_spaces/`` of the current directory and of the package's parent directory."""
    found: list[Path] = []
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        d = (base / "search_spaces").resolve()
        if d.is_dir() and d not in found:
            found.append(d)
    return found


def _show(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _details(space) -> str:
    rows = [f"    {name:<16} channels {ch:>4}  stride {stride}" for name, ch, stride in space.site_table()]
    return space.describe() + "\n  candidate sites:\n" + "\n".join(rows)


def _list(verbose: bool) -> int:
    from acla_nas.space import approx

    dirs = shipped_dirs()
    files = [f for d in dirs for f in sorted(d.glob("*.y*ml"))]
    if not files:
        raise UserError(
            "no search_spaces/ directory found (looked in the current directory and next to the acla_nas package)"
        )
    header = ("file", "backbone", "task", "sites", "budgets", "scopes", "size")
    rows, failed = [], 0
    for f in files:
        s = _load(f)
        if s is None:
            failed += 1
            continue
        n = s.size()
        rows.append(
            (
                _show(f),
                s.spec.backbone,
                s.task_label(),
                str(len(s.sites)),
                s.budgets_label(),
                s.scopes_label(),
                f"{n} ({approx(n)})",
            )
        )
        if verbose:
            print(_details(s) + "\n")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 2 if failed else 0


def _load(path: str, sets: Sequence[Override] = ()):
    """The space of ``path`` (with ``--set`` overrides), or None after printing its one-line error."""
    from acla_nas.core.overrides import apply_overrides, naming_overrides
    from acla_nas.core.yaml_io import read_yaml
    from acla_nas.space import SearchSpace

    try:
        with naming_overrides(sets):
            return SearchSpace.from_dict(apply_overrides(read_yaml(path), sets, path), file=path)
    except UserError as exc:
        print(f"acla-nas spaces: error: {exc}", file=sys.stderr)
        return None


def _expand(paths: list[str]) -> tuple[list[str], int]:
    """Files as given; a folder stands for the YAML files directly inside it. Returns the files
    and the number of folders without any (each reported in one line)."""
    files, empty = [], 0
    for p in paths:
        if not Path(p).is_dir():
            files.append(p)
            continue
        found = sorted(str(f) for f in Path(p).iterdir() if f.suffix.lower() in (".yaml", ".yml") and f.is_file())
        if not found:
            print(
                f"acla-nas spaces: error: {p}: is a folder without .yaml files; pass search-space files or a folder "
                "holding them",
                file=sys.stderr,
            )
            empty += 1
        files += found
    return files, empty


def _validate(paths: list[str], verbose: bool, sets: Sequence[Override] = ()) -> int:
    from acla_nas.space import approx

    paths, failed = _expand(paths)
    for p in paths:
        s = _load(p, sets)
        if s is None:
            failed += 1
            continue
        n = s.size()
        line = f"OK {p}: {len(s.sites)} sites, {n} architectures ({approx(n)})"
        if s.max_modules is not None:
            m = s.size_at_most_modules()
            line += f", {m} ({approx(m)}) with at most {s.max_modules} modules"
        print(line)
        if verbose:
            print(_details(s))
    return 2 if failed else 0


def run(args: argparse.Namespace) -> int:
    from acla_nas.core.overrides import FLAG, parse_overrides

    sets = parse_overrides(args.set)
    if sets and not args.files:
        raise UserError(
            "applies to the space files given; name them (acla-nas spaces FILE --set KEY=VALUE)", field=FLAG
        )
    return _validate(args.files, args.verbose, sets) if args.files else _list(args.verbose)
