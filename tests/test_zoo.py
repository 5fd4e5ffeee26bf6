"""The zoo models against counts derived by hand from architectures.json, and load_model errors."""

import json
from importlib import resources

import pytest
import torch
from torch import nn

from ttplan.costmodel.errors import ModelLoadError
from ttplan.costmodel.zoo import ZOO_MODELS, block_of, build_zoo_model, load_model

ARCH = json.loads(resources.files("costmodel").joinpath("data/architectures.json")
                  .read_text("utf-8"))

# Convolutions: stem + 3 per block - 1 for the expand_ratio==1 first block + feature mix.
# mcunet: 1 + 14*3 - 1 = 42; mbv2: 1 + 17*3 - 1 + 1 = 52; proxyless: 1 + 20*3 - 1 + 1 = 61.
EXPECTED_CONVS = {"mcunet-5fps": 42, "mbv2-w0.35": 52, "proxyless-w0.3": 61}
# The same counts by hand, for the reader: parameters without and with BN (no classifier).
EXPECTED_PARAMS = {
    "mcunet-5fps": (463216, 475232),
    "mbv2-w0.35": (288864, 301280),
    "proxyless-w0.3": (357680, 369280),
}
EXPECTED_FEATURES = {"mcunet-5fps": 160, "mbv2-w0.35": 448, "proxyless-w0.3": 384}


def _convs_from_json(arch):
    """(cin, cout, k, groups) of every convolution, computed from the JSON alone."""
    s = arch["stem"]
    convs = [(s["in_channels"], s["out_channels"], s["kernel_size"], 1)]
    for b in arch["blocks"]:
        if b["expand_ratio"] != 1:
            convs.append((b["in_channels"], b["mid_channels"], 1, 1))
        convs.append((b["mid_channels"], b["mid_channels"], b["kernel_size"], b["mid_channels"]))
        convs.append((b["mid_channels"], b["out_channels"], 1, 1))
    if arch["feature_mix"] is not None:
        f = arch["feature_mix"]
        convs.append((f["in_channels"], f["out_channels"], f["kernel_size"], 1))
    return convs


def _hand_params(arch, classifier):
    convs = _convs_from_json(arch)
    weights = sum(cout * cin // g * k * k for cin, cout, k, g in convs)
    bn = sum(2 * cout for _, cout, _, _ in convs)
    head = arch["classifier"]
    fc = head["in_features"] * head["out_features"] + head["out_features"] if classifier else 0
    return weights + fc, weights + bn + fc


def test_zoo_names():
    assert ZOO_MODELS == ("mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3")
    assert set(ARCH) == set(ZOO_MODELS)


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_json_is_consistent(name):
    for b in ARCH[name]["blocks"]:
        assert b["mid_channels"] == round(b["in_channels"] * b["expand_ratio"])
        if b["residual"]:
            assert b["stride"] == 1 and b["in_channels"] == b["out_channels"]


@pytest.mark.parametrize("name", ZOO_MODELS)
@pytest.mark.parametrize("classifier", [False, True])
def test_counts_and_output(name, classifier):
    model = build_zoo_model(name, classifier=classifier)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == EXPECTED_CONVS[name] == len(_convs_from_json(ARCH[name]))
    assert all(c.bias is None for c in convs)
    no_bn, with_bn = _hand_params(ARCH[name], classifier)
    assert sum(p.numel() for p in model.parameters()) == with_bn
    bn_params = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d)
                    for p in m.parameters())
    assert with_bn - bn_params == no_bn
    if not classifier:
        assert (no_bn, with_bn) == EXPECTED_PARAMS[name]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 128, 128))
    assert out.shape == (1, 1000 if classifier else EXPECTED_FEATURES[name])
    assert model.training  # returned as built


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_module_names_and_blocks(name):
    model = build_zoo_model(name)
    arch = ARCH[name]
    modules = dict(model.named_modules())
    assert isinstance(modules["stem.0"], nn.Conv2d) and modules["stem.0"].stride == (2, 2)
    assert isinstance(modules["pool"], nn.AdaptiveAvgPool2d)
    assert "classifier" not in modules
    assert "blocks.0.expand" not in modules  # first block has expand_ratio 1
    assert ("feature_mix" in modules) == (arch["feature_mix"] is not None)
    assert len(model.ttplan_blocks) == len(arch["blocks"])
    listed = [p for block in model.ttplan_blocks for p in block]
    all_convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    # Every conv but the stem's is in exactly one block; the feature mix is in the last.
    assert sorted(listed) == sorted(n for n in all_convs if n != "stem.0")
    assert len(set(listed)) == len(listed)
    if arch["feature_mix"] is not None:
        assert model.ttplan_blocks[-1][-1] == "feature_mix.0"
        assert block_of(model, "feature_mix.1") == len(arch["blocks"]) - 1
    assert block_of(model, "blocks.3.depthwise.1") == 3
    assert block_of(model, "stem.0") is None
    dw = modules["blocks.3.depthwise.0"]
    b3 = arch["blocks"][3]
    assert dw.groups == b3["mid_channels"] and dw.kernel_size == (b3["kernel_size"],) * 2
    assert dw.padding == (b3["kernel_size"] // 2,) * 2


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_fx_traceable(name):
    model = build_zoo_model(name, classifier=True).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))
    adds = [n for n in traced.graph.nodes if n.op == "call_function" and "add" in str(n.target)]
    assert len(adds) == sum(b["residual"] for b in ARCH[name]["blocks"])


def test_builds_are_bit_identical_and_leave_global_rng_alone():
    torch.manual_seed(1)
    a = build_zoo_model("mbv2-w0.35", classifier=True)
    after = torch.rand(1)
    torch.manual_seed(2)
    b = build_zoo_model("mbv2-w0.35", classifier=True)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    torch.manual_seed(1)
    assert torch.equal(torch.rand(1), after)
    assert sa["blocks.0.depthwise.1.running_var"].eq(1).all()


def test_load_model_zoo_and_import_path():
    model, display = load_model("proxyless-w0.3", classifier=True)
    assert display == "proxyless-w0.3" and model.classifier.out_features == 1000
    model, display = load_model("torch.nn:Identity")
    assert isinstance(model, nn.Identity) and display == "torch.nn:Identity"


def test_load_model_weights_roundtrip(tmp_path):
    source = build_zoo_model("mcunet-5fps")
    with torch.no_grad():
        source.stem[0].weight.add_(1.0)
    plain, wrapped = tmp_path / "plain.pt", tmp_path / "wrapped.pt"
    torch.save(source.state_dict(), plain)
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, wrapped)
    for path in (plain, wrapped):
        model, _ = load_model("mcunet-5fps", weights=str(path))
        assert torch.equal(model.stem[0].weight, source.stem[0].weight)


def _load_error(*args, **kwargs) -> str:
    with pytest.raises(ModelLoadError) as info:
        load_model(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_load_model_errors(tmp_path):
    msg = _load_error("resnet50")
    assert "resnet50" in msg and "mcunet-5fps" in msg and "colon" in msg
    msg = _load_error("nonexistent_mod:f")
    assert "nonexistent_mod" in msg and "ModuleNotFoundError" in msg
    msg = _load_error("os:nonexistent")
    assert "nonexistent" in msg
    msg = _load_error("os:getcwd")  # returns a str
    assert "str" in msg and "nn.Module" in msg
    msg = _load_error("json:loads")  # raises TypeError without arguments
    assert "TypeError" in msg
    _load_error(":f")
    _load_error("os:")

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint\n\x00\x01")
    assert "garbage.pt" in _load_error("mcunet-5fps", weights=str(garbage))
    assert "missing.pt" in _load_error("mcunet-5fps", weights=str(tmp_path / "missing.pt"))

    not_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], not_dict)
    assert "not a state dict" in _load_error("mcunet-5fps", weights=str(not_dict))

    other = tmp_path / "mbv2.pt"
    torch.save(build_zoo_model("mbv2-w0.35").state_dict(), other)
    msg = _load_error("mcunet-5fps", weights=str(other))
    assert "missing" in msg or "unexpected" in msg or "shape" in msg

    head = tmp_path / "head.pt"
    torch.save(build_zoo_model("mcunet-5fps", classifier=True).state_dict(), head)
    msg = _load_error("mcunet-5fps", weights=str(head))
    assert "unexpected classifier.weight" in msg

    reshaped = build_zoo_model("mcunet-5fps").state_dict()
    reshaped["stem.0.weight"] = torch.zeros(16, 3, 5, 5)
    bad_shape = tmp_path / "shape.pt"
    torch.save(reshaped, bad_shape)
    msg = _load_error("mcunet-5fps", weights=str(bad_shape))
    assert "stem.0.weight (16, 3, 5, 5) vs (16, 3, 3, 3)" in msg
