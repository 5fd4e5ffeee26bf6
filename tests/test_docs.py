"""The docs site builds with warnings as errors, its CLI reference is the app's, and every
example of the README and the pages is run (tests/docs_examples.py says how), its output
files checked to exist and parse."""

from __future__ import annotations

import copy
import csv
import hashlib
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from docs_examples import DOCS, PAGES, ROOT, blocks, cheap_variant, command_lines, is_run
from ttplan.cli import app

ALL_BLOCKS = [b for page in PAGES for b in blocks(page)]
RUN_PAGES = sorted({b.page for b in ALL_BLOCKS if is_run(b.marker)})
THIS_TEST = "tests/test_docs.py"
# The lines of the blocks marked `<!-- test: tests/test_docs.py -->` (the README's opening,
# the docs' own commands) start with one of these; the test named beside each runs it.
RUN_HERE = {
    ("README.md", "pip install "): "test_readme_opens_with_the_two_commands",
    ("README.md", "python -m pytest"): "test_readme_opens_with_the_two_commands",
    ("docs/development.md", "mkdocs build "): "test_site_builds_with_warnings_as_errors",
    ("docs/development.md", "python docs/gen_cli_reference.py"): "test_cli_reference_is_current",
}


def line_run_here(page: Path, prefix: str) -> str:
    """The line starting with `prefix` of the page's blocks marked for this test."""
    lines = [line.split("  #")[0].strip() for b in blocks(page) if b.marker == THIS_TEST
             for line in b.text.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, (page, prefix, lines)
    return lines[0]


def test_site_builds_with_warnings_as_errors(tmp_path):
    """The docs' own `mkdocs build --strict --site-dir DIR` line, into a temporary DIR."""
    words = shlex.split(line_run_here(DOCS / "development.md", "mkdocs build "))
    assert words[:3] == ["mkdocs", "build", "--strict"] and "--site-dir" in words
    words[words.index("--site-dir") + 1] = str(tmp_path / "site")
    result = subprocess.run([sys.executable, "-m", *words], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    assert (tmp_path / "site" / "cli" / "index.html").exists()
    assert (tmp_path / "site" / "benchmarks" / "index.html").exists()


def test_cli_reference_is_current():
    """The docs' `python docs/gen_cli_reference.py` line, run with --check (what it would
    write is what docs/cli.md holds)."""
    words = shlex.split(line_run_here(DOCS / "development.md", "python docs/gen_cli_reference.py"))
    spec = importlib.util.spec_from_file_location("gen_cli_reference", ROOT / words[1])
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert (DOCS / "cli.md").read_text() == generator.render(), \
        "docs/cli.md is not current: run python docs/gen_cli_reference.py"
    assert generator.main([*words[2:], "--check"]) == 0


def test_readme_opens_with_the_two_commands():
    """The README opens with the install line and the test line, and both hold: the torch it
    pins is the one installed, the extra it installs exists, the command it ends with runs
    (in the app), and `python -m pytest` runs this suite (pyproject's testpaths)."""
    first = blocks(ROOT / "README.md")[0]
    assert first.lang == "bash" and first.marker == THIS_TEST and first.text.splitlines() == [
        'pip install torch==2.13.0 && pip install -e ".[test]" && ttplan profile mcunet-5fps',
        "python -m pytest"]
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    install = [shlex.split(part) for part in
               line_run_here(ROOT / "README.md", "pip install ").split("&&")]
    assert install[0][:2] == ["pip", "install"] and install[0][2].startswith("torch==")
    assert install[0][2].removeprefix("torch==") == torch.__version__.split("+")[0]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extra = install[1][-1].removeprefix(".[").removesuffix("]")
    assert install[1] == ["pip", "install", "-e", f".[{extra}]"]
    assert extra in pyproject["project"]["optional-dependencies"]
    assert install[2][0] == "ttplan"
    result = CliRunner().invoke(app, install[2][1:])
    assert result.exit_code == 0, result.output
    assert line_run_here(ROOT / "README.md", "python -m pytest") == "python -m pytest"
    assert pyproject["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]


def test_every_marker_is_known_and_every_named_test_exists():
    for block in ALL_BLOCKS:
        if block.marker.startswith("tests/"):
            test = ROOT / block.marker
            assert test.exists(), block.where()
            assert block.page.name in test.read_text(), (block.where(), "test does not read the page")
        else:
            assert block.marker == "" or is_run(block.marker) or block.marker.startswith("write "), \
                block.where()


SHELL = {"bash", "sh", "shell", "console"}


def test_every_example_is_run():
    """No example is only parsed or compiled: every bash and python block of the README and
    the pages is run here (each line of a run bash block a `ttplan` or `mkdir -p` line, which
    test_run_examples runs; each line of a block marked for this file one RUN_HERE names),
    written for a run block to use, or run by the test its marker names."""
    assert all(callable(globals().get(name)) for name in RUN_HERE.values())
    for block in ALL_BLOCKS:
        if block.lang not in SHELL | {"python", "py"}:
            continue
        marker = block.marker
        assert is_run(marker) or marker.startswith("tests/") or \
            (marker.startswith("write ") and block.lang in ("python", "py")), \
            f"{block.where()}: a {block.lang} example no test runs (mark it, tests/docs_examples.py)"
        if block.lang in SHELL and is_run(marker):
            lines = [line for line in block.text.replace("\\\n", " ").splitlines()
                     if shlex.split(line, comments=True)]
            assert len(lines) == len(command_lines(block)), \
                f"{block.where()}: a line that is not `ttplan ...` or `mkdir -p`: not run"
        if marker == THIS_TEST:
            page = str(block.page.relative_to(ROOT))
            for line in block.text.splitlines():
                assert any(line.startswith(prefix) for where, prefix in RUN_HERE if where == page), \
                    f"{block.where()}: {line!r}: no test of {THIS_TEST} runs it (RUN_HERE)"


_sweeps: dict[tuple, list] = {}


def quick_layer_clock(monkeypatch) -> None:
    """`measure --layer-table` times each layer pass once and each whole run once, instead of
    five repeats of at least 2 ms and three rounds of runs, and the generic layers' sweep
    (the same for every model) once per session: the examples check the commands and their
    files, not the machine (the page that runs it says so)."""
    from ttplan.devices import layermeasure, layertable

    time_call, measure_sweep = layertable.time_call, layermeasure.measure_sweep
    monkeypatch.setattr(layertable, "time_call", lambda fn, **_: time_call(
        fn, repeats=1, min_repeat_s=0.0))
    monkeypatch.setitem(layermeasure.measure_table.__kwdefaults__, "run_repeats", 1)

    def sweep_once(batch_sizes, repeats=5):
        key = (tuple(batch_sizes), repeats)
        if key not in _sweeps:
            _sweeps[key] = measure_sweep(batch_sizes, repeats)
        return copy.deepcopy(_sweeps[key])  # measure_table extends the list it gets
    monkeypatch.setattr(layermeasure, "measure_sweep", sweep_once)

    def no_subprocess(*args, **kwargs):
        raise AssertionError("measure --layer-table --in-process started a process")
    monkeypatch.setattr(layermeasure, "_isolated_run", no_subprocess)


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_run_examples(page, tmp_path, monkeypatch):
    quick_layer_clock(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    group = typer.main.get_command(app)
    root = group.make_context("ttplan", [], resilient_parsing=True)
    page_blocks = blocks(page)
    written = set()
    runner = CliRunner()
    try:
        for block in page_blocks:
            if block.marker.startswith("write "):
                name = block.marker.split(None, 1)[1]
                (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / name).write_text(block.text)
                written.add(name.split("/")[0].removesuffix(".py"))
        for block in page_blocks:
            if is_run(block.marker) and block.lang == "bash":
                for args in command_lines(block):
                    if args[:2] == ["mkdir", "-p"]:
                        for folder in args[2:]:
                            (tmp_path / folder).mkdir(parents=True, exist_ok=True)
                        continue
                    args = cheap_variant(block.marker, group.get_command(root, args[0]), args)
                    run_once(runner, args, tmp_path, block.where())
            elif is_run(block.marker) and block.lang == "python":
                exec(compile(block.text, block.where(), "exec"), {"__name__": "__docs__"})
    finally:
        for name in list(sys.modules):  # the examples' own modules, imported by the CLI or the block
            if name.split(".")[0] in written:
                sys.modules.pop(name, None)


# Outputs are byte-identical for the same inputs and seed (the regression fixture pins it), so
# a command line one page runs on the same input files as another (the Fisher file and policy
# several pages start from) is run once per session; later pages get the files it wrote.
_written_by: dict[tuple, dict[str, bytes]] = {}


def _digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:  # names too: a folder of samples is its files' classes
        digest.update(str(file.relative_to(path)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file()}


def run_once(runner, args, folder, where):
    inputs = [(a, _digest(folder / a)) for a in args if (folder / a).exists()]
    own_model = any(re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", a) for a in args)  # module:callable
    modules = [(p, _digest(folder / p)) for p in sorted(_files(folder)) if own_model and p.endswith(".py")]
    key = (tuple(args), tuple(inputs), tuple(modules))
    if key in _written_by:
        for name, data in _written_by[key].items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
    else:
        before = _files(folder)
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (where, args, result.output)
        _written_by[key] = {name: (folder / name).read_bytes()
                            for name, mtime in _files(folder).items() if before.get(name) != mtime}
    for name in _written_by[key]:
        check_output(folder / name, where)
    for path in output_paths(args):
        assert (folder / path).exists(), (where, args, f"{path} not written")


OUTPUT_OPTIONS = ("--out", "--log", "--plot", "--pareto-plot")


def output_paths(args: list[str]) -> list[str]:
    """The files (or folder, for `report --format md`) a command line names as its outputs."""
    options = OUTPUT_OPTIONS + (("--layer-table",) if args[0] == "measure" else ())
    return [args[i + 1] for i, word in enumerate(args[:-1]) if word in options]


def check_output(path: Path, where: str) -> None:
    """A file a command wrote parses as what its suffix says."""
    data = path.read_bytes()
    suffix = path.suffix.lower()
    assert data, (where, f"{path.name} is empty")
    if suffix == ".json":
        json.loads(data)
    elif suffix == ".csv":
        rows = list(csv.DictReader(data.decode().splitlines()))
        assert rows and all(None not in row for row in rows), (where, path.name)
    elif suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), (where, path.name)
    elif suffix == ".svg":
        assert b"<svg" in data, (where, path.name)
    elif suffix == ".pdf":
        assert data.startswith(b"%PDF"), (where, path.name)
    elif suffix == ".html":
        assert data.lstrip().lower().startswith(b"<!doctype html"), (where, path.name)
    elif suffix == ".tex":
        assert b"\\begin{tabular}" in data or b"\\begin{table" in data, (where, path.name)
    else:  # .md and the rest: text
        data.decode()


def test_shown_outputs_are_what_the_commands_print():
    """Every ```text block that starts with `$ ttplan ...` shows what the command prints at 100
    columns: stdout, or stderr when the command sends stdout to /dev/null."""
    runner = CliRunner(env={"COLUMNS": "100"})
    examples = [b for b in ALL_BLOCKS if b.lang == "text" and b.text.startswith("$ ttplan ")]
    assert len(examples) >= 3
    for block in examples:
        command, shown = block.text.split("\n", 1)
        quiet = command.endswith("> /dev/null")
        args = command.removeprefix("$ ttplan ").removesuffix("> /dev/null").split()
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (block.where(), result.output)
        assert (result.stderr if quiet else result.stdout) == shown, block.where()
