"""TinyTL's lite residuals beside blocks that are containers: an nn.Sequential block runs its
own children in order, and must not run the added branch as one more layer."""

import json
import textwrap

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from ttplan.cli import app
from ttplan.costmodel.errors import SpecError
from ttplan.planner.selection.tinytl import add_lite_residuals, lite_layer_names

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
SHAPE = (1, 3, 32, 32)


def _stage(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU())


def sequential_of_sequentials():
    torch.manual_seed(0)
    return nn.Sequential(_stage(3, 8, 2), _stage(8, 16, 2), _stage(16, 16, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))


def test_sequential_blocks_keep_their_layers_and_run_the_branch_once():
    model = sequential_of_sequentials().eval()
    lite = add_lite_residuals(model, SHAPE).eval()
    names = set(dict(model.named_modules()))
    assert names < set(dict(lite.named_modules()))  # no layer renamed
    assert lite_layer_names(lite) == ["1.lite_residual.conv1", "1.lite_residual.conv2",
                                      "2.lite_residual.conv1", "2.lite_residual.conv2"]
    x = torch.randn(SHAPE)
    with torch.no_grad():
        assert torch.equal(model(x), lite(x))  # conv2 starts at zero
        lite[2].lite_residual.conv2.bias.fill_(1.0)  # the branch is added once, beside block 2
        assert torch.allclose(lite[2](lite[1](lite[0](x))),
                              model[2](model[1](model[0](x))) + 1.0)
    calls = []
    lite[1].lite_residual.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        lite(x)
    assert calls == [1]


class IteratesChildren(nn.Module):
    """A container whose forward walks its own children (not nn.Sequential's forward)."""

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)

    def forward(self, x):
        for child in self.children():
            x = child(x)
        return x


def test_a_container_that_would_run_the_branch_twice_is_refused():
    torch.manual_seed(0)
    model = nn.Sequential(_stage(3, 8, 2), IteratesChildren(nn.Conv2d(8, 8, 1), nn.ReLU()),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(SpecError, match="block 1 runs its lite residual other than once"):
        add_lite_residuals(model, SHAPE)


@pytest.fixture
def seq_module(tmp_path, monkeypatch):
    (tmp_path / "seqmodels.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def stage(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout),
                                 nn.ReLU())

        def net():
            torch.manual_seed(0)
            return nn.Sequential(stage(3, 8, 2), stage(8, 16, 2), stage(16, 16, 1),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return "seqmodels:net"


def test_cli_plan_tinytl_and_profile_its_policy(seq_module, tmp_path):
    result = runner.invoke(app, ["plan", seq_module, "--method", "tinytl", "--input-shape",
                                 "1,3,32,32", "--out", "tl.json"])
    assert result.exit_code == 0, result.output
    policy = json.loads((tmp_path / "tl.json").read_text())
    assert [layer["name"] for layer in policy["layers"]] == [
        "0.0", "1.0", "1.lite_residual.conv1", "1.lite_residual.conv2", "2.0",
        "2.lite_residual.conv1", "2.lite_residual.conv2", "5"]
    result = runner.invoke(app, ["profile", seq_module, "--update", "tl.json", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "seqmodels:net+lite-residual"
    assert data["memory"] == policy["predicted"]["memory"]
    assert data["totals"] == policy["predicted"]["totals"]
