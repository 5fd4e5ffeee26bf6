"""The examples of the README and the docs pages, as fenced blocks a test can find.

A fenced block may follow a marker line (blank lines between are allowed):
    <!-- test: run -->              tests/test_docs.py runs it (bash: each `ttplan` line in the
                                    CLI, `mkdir -p DIR` made; python: exec), in one directory per
                                    page, in order
    <!-- test: run with OPTIONS --> the same, each `ttplan` line with OPTIONS appended, each option
                                    only where the command has it: the cheap variant the page states
                                    for a heavy example (the app takes an option's last value, so an
                                    appended size option overrides the page's, e.g. `--iterations 1`)
    <!-- test: write PATH -->       the block written to the file PATH (folders made) in that
                                    directory before any block of the page runs
    <!-- test: tests/test_x.py -->  that test runs the block with its own assertions
Every `bash` and `python` block carries one (tests/test_docs.py::test_every_example_is_run);
`text` blocks starting with `$ ttplan` are compared with what the command prints.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# docs/notes and docs/benchmarks are symlinks to the repository's folders: read them there.
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md",
         *sorted(p for p in DOCS.rglob("*.md") if p.parent.name not in ("notes", "benchmarks"))]

_MARKER = re.compile(r"<!--\s*test:\s*(.*?)\s*-->")
_FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int        # 1-based line of the opening fence
    lang: str
    marker: str      # "" when unmarked
    text: str

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    found, marker, lines = [], "", page.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _MARKER.fullmatch(line.strip())
        if match:
            marker = match.group(1)
        fence = _FENCE.match(line)
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            found.append(Block(page, i + 1, fence.group(1), marker, "\n".join(lines[i + 1:end]) + "\n"))
            marker, i = "", end
        elif line.strip() and not match:
            marker = ""
        i += 1
    return found


def block_after(page: Path, heading: str, lang: str) -> Block:
    """The first `lang` block after the line `heading` of the page."""
    start = page.read_text().splitlines().index(heading) + 1
    return next(b for b in blocks(page) if b.line > start and b.lang == lang)


def command_lines(block: Block) -> list[list[str]]:
    """The argument lists of a bash block's `ttplan ...` lines (continuations joined,
    comments and a trailing `> /dev/null` dropped), without the leading `ttplan`; a
    `mkdir -p DIR...` line as it is."""
    commands = []
    for line in block.text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "ttplan":
            if words[-2:] == [">", "/dev/null"]:
                words = words[:-2]
            commands.append(words[1:])
        elif words[:2] == ["mkdir", "-p"]:
            commands.append(words)
    return commands


def is_run(marker: str) -> bool:
    return marker == "run" or marker.startswith("run with ")


def cheap_variant(marker: str, command, args: list[str]) -> list[str]:
    """`args` with the options of a `run with OPTIONS` marker appended, each option (with its
    value, if it takes one) only where the Click `command` has it."""
    if not marker.startswith("run with "):
        return args
    names = {name for param in command.params for name in param.opts + param.secondary_opts}
    words, extra = shlex.split(marker.removeprefix("run with ")), []
    while words:
        option = words.pop(0)
        value = [words.pop(0)] if words and not words[0].startswith("--") else []
        if option in names:
            extra += [option, *value]
    return [*args, *extra]
