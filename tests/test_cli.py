"""The `ttplan profile` command: formats, files, and one-line errors for bad input."""

import json
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from ttplan.cli import app
from ttplan.devices.runner import RunSettings, Support

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def test_profile_json_contract(tmp_path):
    out = tmp_path / "mbv2.json"
    result = run("profile", "mbv2-w0.35", "--update", "last-blocks:4", "--convention", "paper",
                 "--format", "json", "--out", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for key in ("model", "input_shape", "batch_size", "convention", "update", "layers", "totals",
                "memory"):
        assert key in data
    assert data["model"] == "mbv2-w0.35" and data["input_shape"] == [1, 3, 128, 128]
    layer_keys = {"name", "kind", "block", "params", "forward_macs", "backward_input_macs",
                  "backward_weight_macs", "input_bytes", "output_bytes", "trainable"}
    assert all(layer_keys <= set(layer) for layer in data["layers"])
    assert {"params", "forward_macs", "backward_macs", "backward_input_macs",
            "backward_weight_macs", "unknown_ops"} <= set(data["totals"])
    memory = data["memory"]
    assert all(isinstance(v, int) for v in memory.values())
    assert memory["saved_activation_bytes"] == memory["mask_bytes"] + memory["saved_input_bytes"]
    # A.4's overlap: peak = F1 + B1 + B2 + max(F2, B3 + B4)
    assert memory["peak_bytes"] == memory["weights_bytes"] + memory["gradient_bytes"] + \
        memory["optimizer_bytes"] + max(memory["io_buffer_bytes"], memory["saved_activation_bytes"])
    totals = data["totals"]
    assert totals["backward_macs"] == sum(l["backward_macs"] for l in data["layers"])
    assert totals["forward_macs"] == 17_449_728


def test_same_inputs_give_byte_identical_output(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path in (a, b):
        assert run("profile", "proxyless-w0.3", "--update", "all", "--format", "json",
                   "--out", str(path)).exit_code == 0
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("fmt", ["table", "csv", "md"])
def test_other_formats(fmt):
    result = run("profile", "mcunet-5fps", "--update", "last-layers:2", "--format", fmt)
    assert result.exit_code == 0
    assert "blocks.13.project.0" in result.stdout


def test_batch_size_and_pytorch_convention():
    result = run("profile", "mcunet-5fps", "--batch-size", "4", "--convention", "pytorch",
                 "--update", "all", "--optimizer", "momentum", "--format", "json")
    data = json.loads(result.stdout)
    assert data["batch_size"] == 4 and data["convention"] == "pytorch"
    assert data["memory"]["optimizer_bytes"] == data["memory"]["gradient_bytes"]


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    (tmp_path / "usermodels.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def build_net():
            return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))

        def small():
            return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1))

        class Branchy(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3, padding=1)
            def forward(self, x):
                y = self.conv(x)
                if y.sum() > 0:
                    y = y * 2
                return y

        def branchy():
            return Branchy()

        def broken():
            raise RuntimeError("cannot build")

        def not_a_module():
            return 42

        class Strange(nn.Module):
            def forward(self, x):
                return torch.special.erf(x)

        def strange():
            return Strange()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in list(sys.modules):
        if name == "usermodels":
            del sys.modules[name]


def test_import_path_model(user_models):
    result = run("profile", "usermodels:small", "--input-shape", "1,3,16,16", "--update", "all",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # conv1: 4·16·16·3·9 = 27,648; conv2: 4·16·16·4 = 4,096
    assert data["totals"]["forward_macs"] == 27_648 + 4_096


def test_untraceable_model_falls_back_to_hooks(user_models):
    result = run("profile", "usermodels:branchy", "--input-shape", "1,3,8,8", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tracer"] == "hooks"


def test_unknown_operator_is_listed_and_warned(user_models):
    result = run("profile", "usermodels:strange", "--input-shape", "1,3,8,8", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    # No rule: derived from the traced call (issue 17), marked so and warned about once.
    assert data["totals"]["unknown_ops"] == []
    assert [r["op"] for r in data["layers"] if r["kind"] == "derived"] == ["special_erf"]
    assert data["warnings"] and "derived" in data["warnings"][0]
    assert "warning: no cost rule" in result.stderr


BAD_INPUTS = [
    (["profile", "nosuch-model"], "unknown model"),
    (["profile", "no_such_module_xyz:f"], "no_such_module_xyz"),
    (["profile", "usermodels:broken"], "cannot build"),
    (["profile", "usermodels:not_a_module"], "nn.Module"),
    (["profile", "mcunet-5fps", "--input-shape", "1,3,abc"], "input shape"),
    (["profile", "mcunet-5fps", "--update", "last-layers:x"], "last-layers"),
    (["profile", "mcunet-5fps", "--update", "last-blocks:99"], "only 14 blocks"),
    (["profile", "mcunet-5fps", "--convention", "ideal"], "convention"),
    (["profile", "mcunet-5fps", "--optimizer", "rmsprop"], "optimizer"),
    (["profile", "mcunet-5fps", "--weight-bits", "7"], "7"),
    (["profile", "mcunet-5fps", "--format", "xml"], "format"),
    (["profile", "mcunet-5fps", "--input-shape", "1,5,32,32"], "fails on an input"),
    (["profile", "usermodels:branchy", "--tracer", "fx"], "torch.fx cannot trace"),
    (["profile", "mcunet-5fps", "--update", "missing-policy.json"], "not found"),
    (["profile", "mcunet-5fps", "--weights", "missing.pt"], "missing.pt"),
]


@pytest.mark.parametrize("args,needle", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_no_file(user_models, args, needle):
    out = user_models / "out.json"
    result = run(*args, "--out", str(out))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle.lower() in lines[0].lower()
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not [p for p in user_models.iterdir() if p.name.startswith(".out.json")]


def test_sweep_matches_profile_and_grows_with_k():
    result = run("sweep", "mcunet-5fps", "--unit", "blocks", "--k", "1-3", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["k"], r["convention"]) for r in rows][:2] == [(1, "paper"), (1, "pytorch")]
    paper = [r for r in rows if r["convention"] == "paper"]
    assert all(a["saved_activation_bytes"] < b["saved_activation_bytes"]
               for a, b in zip(paper, paper[1:]))
    single = json.loads(run("profile", "mcunet-5fps", "--update", "last-blocks:2",
                            "--format", "json").stdout)
    assert paper[1]["saved_activation_bytes"] == single["memory"]["saved_activation_bytes"]
    assert run("sweep", "mcunet-5fps", "--k", "0-99").exit_code == 2


def test_tinytl_policy_profiles_with_its_lite_residuals(tmp_path):
    policy = tmp_path / "tl.json"
    assert run("plan", "mcunet-5fps", "--method", "tinytl", "--out", str(policy)).exit_code == 0
    result = run("profile", "mcunet-5fps", "--update", str(policy), "--format", "json")
    assert result.exit_code == 0, result.output
    data, planned = json.loads(result.stdout), json.loads(policy.read_text())
    assert data["model"] == "mcunet-5fps+lite-residual"
    assert data["memory"] == planned["predicted"]["memory"]
    assert data["totals"] == planned["predicted"]["totals"]
    assert data["totals"]["params"] > json.loads(
        run("profile", "mcunet-5fps", "--format", "json").stdout)["totals"]["params"]


def test_compare_table2_style(tmp_path):
    fisher = tmp_path / "f.json"
    assert run("fisher", "mcunet-5fps", "--synthetic", "--samples", "10", "--out",
               str(fisher)).exit_code == 0
    result = run("compare", "mcunet-5fps", "--fisher", str(fisher), "--memory", "1MB",
                 "--compute", "15%", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"fulltrain", "lastlayer", "tinytl", "sparseupdate", "tinytrain"}
    assert rows["tinytrain"]["memory_ratio"] == rows["tinytrain"]["compute_ratio"] == 1.0
    assert rows["tinytrain"]["within_budget"] and rows["tinytrain"]["peak_bytes"] <= 1_000_000
    full = json.loads(run("profile", "mcunet-5fps", "--update", "all", "--format", "json").stdout)
    assert rows["fulltrain"]["peak_bytes"] == full["memory"]["peak_bytes"]
    assert rows["fulltrain"]["memory_ratio"] == round(
        full["memory"]["peak_bytes"] / rows["tinytrain"]["peak_bytes"], 2)


def test_profile_verify_answers_batchnorm_on_a_one_by_one_map_at_batch_1():
    # mcunet-5fps at 32x32 ends on a 1x1 map: BN in train mode at batch 1 is refused by
    # PyTorch; --verify measures batches 2 and 3 instead of ending in a traceback.
    result = run("profile", "mcunet-5fps", "--update", "all", "--input-shape", "1,3,32,32",
                 "--verify", "--format", "json")
    assert result.exit_code == 0, result.output
    verify = json.loads(result.stdout)["verify"]
    assert verify["measured_batches"] == [2, 3]
    assert verify["measured_bytes"] == verify["predicted_bytes"]


def test_profile_verify_in_eval_mode_is_what_train_measures():
    # One definition: --eval-mode runs BatchNorm as `ttplan train` does (batch 1 then runs);
    # the same bytes as train's measured saved bytes for the same configuration.
    import ttplan
    result = run("profile", "mcunet-5fps", "--update", "all", "--input-shape", "1,3,32,32",
                 "--verify", "--eval-mode", "--format", "json")
    assert result.exit_code == 0, result.output
    verify = json.loads(result.stdout)["verify"]
    assert verify["measured_batches"] == [1]
    trained = ttplan.train("mcunet-5fps", update="all", inputs=(1, 3, 32, 32),
                           support=Support(synthetic=True, samples=5, holdout=0),
                           run=RunSettings(iterations=1))
    assert verify["measured_bytes"] == verify["predicted_bytes"] == \
        trained.measured["saved_bytes"] == trained.predicted["saved_bytes"]
