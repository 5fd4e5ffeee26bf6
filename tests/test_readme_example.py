"""The docs' worked example, run as written: fisher → plan → profile → export → apply
(docs/guides/plan.md), and the rule for your own module (docs/guides/own-models.md)."""

import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner


from ttplan.cli import app

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = {"## Plan what to train": DOCS / "guides" / "plan.md",
         "```python\nimport torch, ttplan": DOCS / "guides" / "plan.md",
         "### Pricing your own module": DOCS / "guides" / "own-models.md"}


def readme_block(after: str, lang: str) -> str:
    """The first `lang` block after `after` on its page (a heading matches at any level)."""
    text = PAGES[after].read_text()
    start = text.index(after.lstrip("#")) if after.startswith("#") else text.index(after)
    match = re.search(rf"```{lang}\n(.*?)```", text[start:], re.S)
    return match.group(1)


def test_worked_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    commands = [line.split("#")[0].split()[1:] for line in
                readme_block("## Plan what to train", "bash").strip().splitlines()]
    outputs = []
    for args in commands:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        outputs.append(result.stdout)
    policy = json.loads((tmp_path / "policy.json").read_text())
    profiled = json.loads(outputs[2])
    assert profiled["memory"] == policy["predicted"]["memory"]
    assert profiled["totals"] == policy["predicted"]["totals"]
    assert policy["predicted"]["memory"]["peak_bytes"] <= 1_000_000
    assert policy["predicted"]["totals"]["backward_macs"] <= policy["budgets"]["compute_macs"]
    exported = json.loads(outputs[4][outputs[4].index("{"):])
    assert {"n_bias_update", "manual_weight_idx", "weight_update_ratio"} <= set(exported)

    # The Python part, then one step of the loop it leaves to the user.
    namespace = {}
    exec(readme_block("```python\nimport torch, ttplan", "python"), namespace)
    model, opt = namespace["model"], namespace["opt"]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0)))
    out.square().mean().backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    selected = {layer["name"] for layer in policy["layers"]}
    # A zoo conv "blocks.10.expand.0" has its BatchNorm at "blocks.10.expand.1"; it trains with it.
    allowed = selected | {name[:-1] + "1" for name in selected}
    assert changed and {n.rsplit(".", 1)[0] for n in changed} <= allowed
    for layer in policy["layers"]:
        weight = dict(model.named_parameters())[layer["name"] + ".weight"]
        diff = (weight - before[layer["name"] + ".weight"]).flatten(1).abs().sum(1) > 0
        unselected = sorted(set(range(weight.shape[0])) - set(layer["channels"] or []))
        assert not diff[unselected].any()


def test_pricing_your_own_module_example():
    from ttplan.costmodel.rules import REGISTRY

    namespace = {}
    exec(readme_block("### Pricing your own module", "python"), namespace)
    gate, rule = namespace["Gate"], namespace["gate"]
    try:
        assert REGISTRY.modules[gate] and REGISTRY.rule_for(REGISTRY.modules[gate]) is rule
        model = namespace["model"]
        assert namespace["ttplan"].profile(model, (1, 3, 5, 5)).totals["forward_macs"] == 400
    finally:
        del REGISTRY.rules[REGISTRY.modules.pop(gate)]


# Every `$ ttplan` block of the README and the docs: tests/test_docs.py.
