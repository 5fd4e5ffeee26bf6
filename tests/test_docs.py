"""The docs site builds with warnings as errors, its CLI reference is the app's, and every
example of the README and the pages is run, parsed by the app, or compiled
(tests/docs_examples.py says which)."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from docs_examples import DOCS, PAGES, ROOT, blocks, cheap_variant, command_lines, is_run
from ttplan.cli import app

ALL_BLOCKS = [b for page in PAGES for b in blocks(page)]
RUN_PAGES = sorted({b.page for b in ALL_BLOCKS if is_run(b.marker)})


def test_site_builds_with_warnings_as_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    assert (tmp_path / "site" / "cli" / "index.html").exists()
    assert (tmp_path / "site" / "benchmarks" / "index.html").exists()


def test_cli_reference_is_current():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", DOCS / "gen_cli_reference.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert (DOCS / "cli.md").read_text() == generator.render(), \
        "docs/cli.md is not current: run python docs/gen_cli_reference.py"


def test_readme_opens_with_the_two_commands():
    first = blocks(ROOT / "README.md")[0]
    assert first.lang == "bash" and first.text.splitlines() == [
        'pip install torch==2.13.0 && pip install -e ".[test]" && ttplan profile mcunet-5fps',
        "python -m pytest"]
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_every_marker_is_known_and_every_named_test_exists():
    for block in ALL_BLOCKS:
        if block.marker.startswith("tests/"):
            test = ROOT / block.marker
            assert test.exists(), block.where()
            assert block.page.name in test.read_text(), (block.where(), "test does not read the page")
        else:
            assert block.marker == "" or is_run(block.marker) or block.marker.startswith("write "), \
                block.where()


def test_every_command_line_parses():
    """Each `ttplan` line of every bash block names a command and options the app has, with
    values of the right type (parsed by Click, not run)."""
    group = typer.main.get_command(app)
    root = group.make_context("ttplan", [], resilient_parsing=True)
    checked = 0
    for block in ALL_BLOCKS:
        if block.lang != "bash":
            continue
        for args in command_lines(block):
            if args[:2] == ["mkdir", "-p"]:
                continue
            command = group.get_command(root, args[0]) if args else None
            assert command is not None, (block.where(), args)
            try:
                command.make_context(args[0], list(args[1:]), parent=root)
            except Exception as error:  # click.UsageError, BadParameter
                pytest.fail(f"{block.where()}: ttplan {' '.join(args)}: {error}")
            checked += 1
    assert checked >= 50


def test_every_unrun_python_block_compiles():
    for block in ALL_BLOCKS:
        if block.lang == "python" and not is_run(block.marker):
            compile(block.text, block.where(), "exec")


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_run_examples(page, tmp_path, monkeypatch):
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
        return
    before = _files(folder)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (where, args, result.output)
    _written_by[key] = {name: (folder / name).read_bytes()
                        for name, mtime in _files(folder).items() if before.get(name) != mtime}


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
