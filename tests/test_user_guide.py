"""docs/user-guide.md runs as written: every file it shows is written and every command it shows
is run, in order, in an empty directory, and each command's output must have the shape the page
shows.

The page's conventions: a fenced block with ``file=NAME`` in its info string (```` ```python
file=mynet.py ````) is a file to write; a ```` ```console ```` block holds ``$ command`` lines,
each followed by the output it printed (stdout and stderr together). Output is compared by shape:
numbers are masked (another CPU gives other digits, see results/README.md) and so are lists of
ACLA modules (``blocks.1:K2/all``), and every line the page shows must appear, in order; lines
that exist only when the discovered child carries a module (``ARCH_DEPENDENT``) may be missing.
The page's step counts are tiny, so this stays fast; ``Set5/`` is made of stand-in images (crops
of the embedded photographs) since the test cannot download Set5.

``python tests/test_user_guide.py --update`` runs the page and writes the real output into it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "user-guide.md"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")
MODULES = re.compile(r"[A-Za-z_][\w.#]*:K#(?:/[\w+#]+)?(?:, [A-Za-z_][\w.#]*:K#(?:/[\w+#]+)?)*|(?<=modules: )none")
ARCH_DEPENDENT = ("key_usage", "keys kept per query")
TIMEOUT = 600


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    kind: str  # "file" or "console"
    name: str = ""
    text: str = ""
    commands: list[Command] = field(default_factory=list)
    span: tuple[int, int] = (0, 0)  # character span of the block's body in the page


def parse(text: str) -> list[Block]:
    blocks = []
    for m in FENCE.finditer(text):
        info, body = m.group(1).strip(), m.group(2)
        name = next((w[5:] for w in info.split() if w.startswith("file=")), "")
        if name:
            blocks.append(Block("file", name=name, text=body, span=m.span(2)))
        elif info == "console":
            cmds: list[Command] = []
            for line in body.splitlines():
                if line.startswith("$ "):
                    cmds.append(Command(line[2:]))
                elif cmds:
                    cmds[-1].expected.append(line)
            blocks.append(Block("console", commands=cmds, span=m.span(2)))
    return blocks


def normalise(line: str) -> str:
    return MODULES.sub("<modules>", NUMBER.sub("#", line.rstrip()))


def shape_mismatch(expected: list[str], actual: list[str]) -> str | None:
    """None when every expected line appears in order in ``actual`` (after :func:`normalise`)."""
    got = [normalise(a) for a in actual]
    i = 0
    for line in expected:
        want = normalise(line)
        if not want:
            continue
        j = next((k for k in range(i, len(got)) if got[k] == want), None)
        if j is None:
            if any(w in line for w in ARCH_DEPENDENT):
                continue
            return f"missing line {line!r}"
        i = j + 1
    return None


def stand_in_set5(folder: Path) -> None:
    """Five crops of the embedded photographs as a stand-in for Set5 (no download here)."""
    from PIL import Image

    from acla_nas.data.images import embedded_dir

    folder.mkdir()
    for i, (name, box) in enumerate(
        [
            ("astronaut.png", (100, 40, 196, 136)),
            ("coffee.png", (200, 150, 296, 246)),
            ("chelsea.png", (150, 60, 246, 156)),
            ("camera.png", (200, 80, 296, 176)),
            ("coins.png", (10, 10, 106, 106)),
        ]
    ):
        Image.open(embedded_dir() / name).convert("RGB").crop(box).save(folder / f"img_{i:03d}.png")


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLA_NAS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # acla-nas of this venv
    env["ACLA_NAS_PROGRESS_SECONDS"] = "3600"  # no time-dependent progress lines in the compared output
    env["OMP_NUM_THREADS"] = "1"  # one thread per process: on a busy 2-core machine 2 threads run 4x slower
    env["COLUMNS"] = "100"
    return env


def run_page(workdir: Path, text: str) -> list[tuple[Block, list[tuple[Command, list[str], int]]]]:
    """Write the files and run the commands of the page in ``workdir``; (block, [(command, output
    lines, exit code)]) for every console block."""
    stand_in_set5(workdir / "Set5")
    results = []
    env = environment()
    for block in parse(text):
        if block.kind == "file":
            (workdir / block.name).write_text(block.text)
            continue
        done = []
        for cmd in block.commands:
            proc = subprocess.run(
                ["bash", "-c", cmd.line],
                cwd=workdir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=TIMEOUT,
            )
            done.append((cmd, proc.stdout.splitlines(), proc.returncode))
        results.append((block, done))
    return results


def test_every_command_of_the_user_guide_runs_as_shown(tmp_path: Path) -> None:
    text = GUIDE.read_text()
    blocks = parse(text)
    assert sum(len(b.commands) for b in blocks) >= 10 and any(b.kind == "file" for b in blocks)
    for _block, done in run_page(tmp_path, text):
        for cmd, output, code in done:
            fails = any("error:" in e for e in cmd.expected)
            assert (code != 0) == fails, f"$ {cmd.line}\nexit {code}\n" + "\n".join(output)
            why = shape_mismatch(cmd.expected, output)
            assert why is None, f"$ {cmd.line}: {why}; it printed:\n" + "\n".join(output)
    assert (tmp_path / "runs" / "mynet" / "retrain" / "model.pt").is_file()


def test_shape_comparison_masks_numbers_and_modules_only() -> None:
    assert (
        shape_mismatch(
            ["best: val PSNR 20.4 dB; modules: blocks.1:K2"],
            ["x", "best: val PSNR 19.93 dB; modules: blocks.0:K4/all, blocks.2:K2"],
        )
        is None
    )
    assert (
        shape_mismatch(["best: 20.4 dB; modules: blocks.1:K2"], ["best: 20.0 dB; modules: none"]) is None
    )  # plain child
    assert shape_mismatch(["best: val PSNR 20.4 dB"], ["best: val SSIM 0.5"]) is not None
    assert shape_mismatch(["a 1", "b 2"], ["b 2", "a 1"]) is not None  # order matters
    assert shape_mismatch(["keys kept per query (test mean): blocks.1 2.00", "model: m.pt"], ["model: m.pt"]) is None


def update(path: Path = GUIDE) -> None:
    """Run the page in a fresh temporary directory and write each command's real output into it."""
    import tempfile

    text = path.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        results = run_page(Path(tmp), text)
    for block, done in reversed(results):
        body = "".join(f"$ {cmd.line}\n" + "".join(f"{line.rstrip()}\n" for line in output) for cmd, output, _ in done)
        text = text[: block.span[0]] + body + text[block.span[1] :]
    path.write_text(text)
    print(f"updated {path} ({sum(len(d) for _, d in results)} commands)")


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        update()
    else:
        print(f"usage: python {shlex.quote(sys.argv[0])} --update   (or run it with pytest)")
