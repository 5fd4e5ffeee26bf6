"""The zoo outputs pinned byte for byte: every command line below, and the SHA-256 of what it
prints (or writes). `python tests/regression/outputs.py --write` records them again, which is
only right when an output is meant to change.

The Fisher probe sums float32 products whose last bits differ between CPUs (AVX2 or AVX-512
kernels), so its files are not pinned by hash: each `fisher` line's file must agree with the
recorded one in `fisher/MODEL.json` to 0.1 % per channel, and the recorded file, not this
machine's, is what the later lines read. Everything downstream of it is pinned byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from typer.testing import CliRunner

HASHES = Path(__file__).with_name("hashes.json")
FISHER = Path(__file__).with_name("fisher")
FISHER_RTOL = 1e-3
MODELS = ("mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3")
UPDATES = ("none", "all", "bias-only", "last-layers:3", "last-blocks:2")


def command_lines() -> list[list[str]]:
    """In order: later lines read the files earlier ones write, in a scratch folder."""
    lines: list[list[str]] = []
    for model in MODELS:
        for convention in ("paper", "pytorch"):
            for update in UPDATES:
                lines.append(["profile", model, "--update", update, "--convention", convention,
                              "--format", "json"])
        lines.append(["fisher", model, "--synthetic", "--samples", "4", "--seed", "0",
                      "--out", f"{model}.fisher.json"])
        fisher = f"{model}.fisher.json"
        for method in ("tinytrain", "sparseupdate", "lastlayer", "tinytl", "fulltrain"):
            lines.append(["plan", model, "--method", method, "--fisher", fisher, "--memory",
                          "1MB", "--compute", "15%", "--format", "json",
                          "--out", f"{model}.{method}.json"])
            lines.append(["profile", model, "--update", f"{model}.{method}.json",
                          "--format", "json"])
        lines.append(["plan", model, "--fisher", fisher, "--memory", "1.2MB", "--compute",
                      "10%", "--solver", "exact", "--format", "json"])
        lines.append(["export", f"{model}.tinytrain.json"])
    lines += [
        ["profile", "mcunet-5fps", "--update", "last-blocks:4", "--optimizer", "adam",
         "--batch-size", "2", "--format", "json"],
        ["profile", "mcunet-5fps", "--update", "all", "--weight-bits", "8",
         "--activation-bits", "8", "--weights-in-ram", "--format", "json"],
        ["profile", "mbv2-w0.35", "--update", "last-blocks:2", "--format", "csv"],
        ["profile", "mbv2-w0.35", "--update", "last-blocks:2", "--format", "md"],
        ["profile", "proxyless-w0.3", "--update", "all", "--convention", "pytorch",
         "--optimizer", "momentum", "--format", "table"],
        ["plan", "mcunet-5fps", "--fisher", "mcunet-5fps.fisher.json", "--memory", "4MB",
         "--compute", "15%", "--convention", "pytorch", "--channels", "l2norm", "--format",
         "json"],
        ["sweep", "mcunet-5fps", "--format", "json"],
        ["compare", "mbv2-w0.35", "--fisher", "mbv2-w0.35.fisher.json", "--memory", "1MB",
         "--compute", "15%", "--format", "json"],
    ]
    return lines


def run_all(scratch: Path, record_fisher: bool = False) -> dict[str, str]:
    """Run every line in-process; the hash of stdout, or of the file a line writes with --out.
    A `fisher` line's file is checked against (or, with `record_fisher`, recorded as) the
    fixture in FISHER, then replaced by it."""
    from ttplan.cli import app

    threads, cwd = torch.get_num_threads(), os.getcwd()
    torch.set_num_threads(1)
    os.chdir(scratch)  # relative names, so that no output holds the scratch folder's path
    try:
        runner = CliRunner(env={"COLUMNS": "100"})  # tables fit $COLUMNS: pin the width
        hashes: dict[str, str] = {}
        for line in command_lines():
            args = line
            result = runner.invoke(app, args)
            if result.exit_code != 0:
                raise AssertionError(f"{' '.join(line)} exited {result.exit_code}: "
                                     f"{result.output}")
            text = result.stdout
            if line[0] == "fisher":
                _use_recorded_fisher(scratch / args[args.index("--out") + 1], line[1], record_fisher)
            if "--out" in args:
                text += (scratch / args[args.index("--out") + 1]).read_text()
            hashes[" ".join(line)] = hashlib.sha256(text.encode()).hexdigest()
        return hashes
    finally:
        torch.set_num_threads(threads)
        os.chdir(cwd)


def _use_recorded_fisher(written: Path, model: str, record: bool) -> None:
    recorded = FISHER / f"{model}.json"
    if record:
        FISHER.mkdir(exist_ok=True)
        recorded.write_text(written.read_text())
        return
    check_fisher_agrees(json.loads(written.read_text()), json.loads(recorded.read_text()),
                        str(recorded))
    written.write_text(recorded.read_text())


def check_fisher_agrees(ours: dict, recorded: dict, where: str) -> None:
    """Two Fisher files of the same probe: the same header, layers and channels, every value
    within FISHER_RTOL of the recorded one (the last bits of float32 sums differ by CPU)."""
    if {k: v for k, v in ours.items() if k != "layers"} != \
            {k: v for k, v in recorded.items() if k != "layers"}:
        raise AssertionError(f"fisher: header differs from {where}")
    for a, b in zip(ours["layers"], recorded["layers"], strict=True):
        far = [i for i, (x, y) in enumerate(zip(a["channel_fisher"], b["channel_fisher"], strict=True))
               if abs(x - y) > FISHER_RTOL * max(abs(x), abs(y), 1e-30)]
        if a["name"] != b["name"] or far:
            raise AssertionError(f"fisher: layer {a['name']} differs from {where} "
                                 f"beyond {FISHER_RTOL:g} (channels {far[:5]})")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        found = run_all(Path(tmp), record_fisher="--write" in sys.argv)
    if "--write" in sys.argv:
        HASHES.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(found)} hashes to {HASHES}")
    else:
        known = json.loads(HASHES.read_text())
        changed = [k for k in known if known[k] != found.get(k)]
        print("\n".join(changed) or "all outputs unchanged")
