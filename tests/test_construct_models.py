"""Issue 17's constructs (tests/construct_models.py), one model each (the BERT-like and GPT-like
text models called with integer token ids through `inputs=`), checked as the library
lookalikes are (tests/test_library_models.py): parameters equal sum(p.numel()), no unknown
operator and no warning under both tracers, both tracers cost the same, and the `pytorch`
convention's saved bytes equal what autograd keeps in a train-mode step (saved_tensors_hooks)
within 1 % under all, bias-only and last-blocks:2. Forward and backward MACs by hand:

  linear rows·out·in; conv N·Cout·Hout·Wout·(Cin/groups)·k²
  nn.MultiheadAttention (q = k = v, N×L×E, heads·head_dim = E): projections in N·L·3E·E and
      out N·L·E·E, attention Q·Kᵀ + P·V 2·N·L·L·E; backward: the output projection's and the
      attention's input gradients (N·L·E·E + 4·N·L·L·E) whenever anything in it trains, the
      input projections' when its input needs a gradient; weight gradient = projections
  matmul / SDPA: Q·Kᵀ and P·V; each operand needing a gradient one more product of that size
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import ttplan
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.trace import trace
from tests.construct_models import (CONSTRUCT_MODELS, TEXT_MODELS, BufferMaskAttention,
                                    ConvNeXtV2Block, DropPathNet, MHABlock, MHAViT, PaddingMaskEncoder,
                                    SinusoidalPosition)
from tests.model_checks import (TRACERS, conv, exactness_tests, profile_case,
                                 assert_forward_flops_match_flop_counter)
from tests.test_pytorch_convention import assert_close, predicted_and_measured

pytestmark = pytest.mark.usefixtures("one_thread")

(test_params_counted_and_every_op_priced, test_both_tracers_cost_the_same,
 test_saved_bytes_match_autograd) = exactness_tests(CONSTRUCT_MODELS)
prof = functools.partial(profile_case, CONSTRUCT_MODELS)  # prof(name, update, tracer, **kw)


def linear(rows, cin, cout):
    return rows * cin * cout


def macs(name, update="all"):
    t = prof(name, update).totals
    return t["forward_macs"], t["backward_input_macs"], t["backward_weight_macs"]


def test_multihead_attention_macs_by_hand():
    n, tokens, e = 2, 5, 16  # 8×8 image, 4×4 patches, a class token
    rows = n * tokens
    patch, head = conv(n, e, 2, 3, 4), linear(n, e, 5)
    into, out = linear(rows, e, 3 * e), linear(rows, e, e)
    attention = 2 * n * tokens * tokens * e
    mlp = linear(rows, e, 2 * e) + linear(rows, 2 * e, e)
    for name in ("mha_vit", "mha_vit_weights"):
        assert macs(name) == (patch + 3 * (into + attention + out + mlp) + head,
                              3 * (out + 2 * attention + into + mlp) + head,
                              patch + 3 * (into + out + mlp) + head)
    # last-blocks:2 trains blocks.1 and blocks.2 (their norms too, so each attention's input
    # needs a gradient); blocks.0 and the patch embedding get none, the head passes it back.
    assert macs("mha_vit", "last-blocks:2")[1:] == (
        2 * (out + 2 * attention + into + mlp) + head, 2 * (into + out + mlp))


def test_multihead_attention_is_a_layer_under_every_update():
    model = MHAViT()
    names = {n for n, _ in model.named_parameters() if n.startswith("blocks.1.attn")}
    rows = {r["name"]: r for r in prof("mha_vit", "bias-only").evaluation.rows}
    assert rows["blocks.1.attn"]["kind"] == "mha"
    assert rows["blocks.1.attn"]["trainable_params"] == 3 * 16 + 16  # in_proj_bias, out bias
    assert prof("mha_vit").graph["blocks.1.attn"].params == \
        sum(p.numel() for n, p in model.named_parameters() if n in names)
    from ttplan.costmodel.config import parameter_requires_grad, resolve_updates
    from ttplan.costmodel.specs import parse_update
    graph = trace(model, (2, 3, 8, 8))
    for spec, expect in (("all", names), ("bias-only", {"blocks.1.attn.in_proj_bias",
                                                         "blocks.1.attn.out_proj.bias"})):
        from ttplan.costmodel.config import TrainConfig
        flags = parameter_requires_grad(graph, TrainConfig(resolve_updates(parse_update(spec),
                                                                          graph)))
        assert {n for n in names if flags.get(n)} == expect, spec


def test_fisher_probes_multihead_attention():
    model = MHAViT()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 0, 1])
    result = ttplan.fisher_information(model, ["blocks.0.attn", "blocks.2.attn"], x, y)
    assert set(result.layers) == {"blocks.0.attn", "blocks.2.attn"}
    assert all(len(d) == 16 for d in result.layers.values())  # one Δ per embedding channel


def test_multihead_attention_is_planned_whole_and_applied():
    model = MHAViT()
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    layers = sorted({n.layer_key for n in trace(model, (2, 3, 8, 8)).mac_layers()})
    fisher = ttplan.fisher_information(model, layers, x, torch.arange(8) % 2)
    policy = ttplan.plan(model, fisher=fisher, inputs=(1, 3, 8, 8),
                         memory_bytes="400kB", compute="90%")
    attn = [l for l in policy.layers if l["name"].endswith("attn")]
    assert attn and all(l["channels"] is None for l in attn)  # all or nothing
    trained = set(ttplan.apply_policy(model, policy).trainable)
    for layer in attn:
        assert {f"{layer['name']}.{p}" for p in ("in_proj_weight", "out_proj.weight",
                                                  "in_proj_bias", "out_proj.bias")} <= trained
    # SparseUpdate's search takes per-layer input-channel ratios: all or nothing here too.
    baseline = ttplan.plan(model, method="sparseupdate", inputs=(1, 3, 8, 8),
                           memory_bytes="400kB")
    assert all(l["channels"] is None for l in baseline.layers if l["name"].endswith("attn"))
    ttplan.apply_policy(MHAViT(), baseline)


def test_xca_macs_by_hand():
    n, length, c, heads, depth = 2, 6, 16, 2, 2
    rows, head_dim = n * length, c // heads
    qkv, proj, head = linear(rows, c, 3 * c), linear(rows, c, c), linear(n, c, 3)
    product = n * heads * head_dim * head_dim * length  # (C/h × N)·(N × C/h), then · v
    assert macs("xca") == (depth * (qkv + proj + 2 * product) + head,
                           depth * (qkv + proj + 4 * product) + head,
                           depth * (qkv + proj) + head)


def test_convnextv2_grn_macs_by_hand():
    n, dim, depth = 2, 8, 2
    stem, head = conv(n, dim, 4, 3, 4), linear(n, dim, 5)
    block = conv(n, dim, 4, 1, 7) + 2 * linear(n * 16, dim, 4 * dim)
    forward = stem + depth * block + head
    assert macs("convnextv2_grn") == (forward, forward - stem, forward)


def test_gpt2_conv1d_macs_by_hand():
    n, length, c, depth = 2, 6, 16, 2
    rows = n * length
    linears = linear(rows, c, 3 * c) + linear(rows, c, c) + 2 * linear(rows, c, 4 * c)
    attention = 2 * n * length * length * c
    head = linear(n, c, 3)
    assert macs("gpt2_conv1d") == (depth * (linears + attention) + head,
                                   depth * (linears + 2 * attention) + head,
                                   depth * linears + head)
    layer = prof("gpt2_conv1d").graph["h.0.c_fc"]
    assert (layer.kind, layer.op, layer.weight_shape) == ("linear", "addmm", (64, 16))


@pytest.mark.parametrize("name", ["train_dropout_sdpa", "train_dropout_explicit",
                                  "sdpa_bias_mask"])
def test_attention_macs_by_hand(name):
    n, length, c, depth = 2, 6, 16, 2
    rows = n * length
    linears, attention = linear(rows, c, 3 * c) + linear(rows, c, c), 2 * n * length * length * c
    head = linear(n, c, 3)
    assert macs(name) == (depth * (linears + attention) + head,
                          depth * (linears + 2 * attention) + head, depth * linears + head)


def test_small_constructs_macs_by_hand():
    n, length, c = 2, 6, 16
    fc, head = linear(n * length, c, c), linear(n, c, 3)
    assert macs("last_token") == (fc + head, head, fc + head)
    assert macs("slice_norm") == (linear(n * length, c, c) + linear(n, c, 3),
                                  linear(n, c, 3), linear(n * length, c, c) + linear(n, c, 3))
    pos, fc, head = linear(length, c, c), linear(n * length, c, c), linear(n, c, 3)
    # The position projection's input is computed from no input: no input gradient.
    assert macs("position_device") == (pos + fc + head, fc + head, pos + fc + head)
    stem, fc, head = conv(n, 8, 6, 3, 3), linear(n * 64, 8, 8), linear(n, 8, 3)
    assert macs("shift_pad") == (stem + fc + head, fc + head, stem + fc + head)


def test_forward_flops_match_flop_counter():
    assert_forward_flops_match_flop_counter(
        CONSTRUCT_MODELS, ("xca", "convnextv2_grn", "train_dropout_explicit",
                           "slice_norm", "position_device", "shift_pad"))


def test_train_only_dropout_is_priced_and_the_model_state_kept():
    model = CONSTRUCT_MODELS["train_dropout_sdpa"]()
    model.eval()
    torch.manual_seed(3)
    rng = torch.random.get_rng_state()
    graph = trace(model, (2, 6, 16))
    assert graph["scaled_dot_product_attention"].attrs["dropout_p"] == 0.1
    assert not any(m.training for m in model.modules())  # modes given back
    assert torch.equal(torch.random.get_rng_state(), rng)  # and the RNG state


def test_batchnorm_running_statistics_are_not_changed_by_tracing():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(),
                          nn.Linear(4 * 36, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace(model, (2, 3, 8, 8))
    trace(model, (2, 3, 8, 8), tracer="hooks")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and model[1].training


def test_a_parameter_read_for_its_device_is_not_a_use():
    for tracer in TRACERS:
        p = ttplan.profile(SinusoidalPosition(16), (2, 6, 16),
                           tracing=ttplan.Tracing(tracer=tracer))
        assert p.totals["params"] == 16 * 16 + 16
        assert [r["name"] for r in p.evaluation.rows if r["kind"] == "parameter"] == []


@pytest.mark.parametrize("tracer", TRACERS)
@pytest.mark.parametrize("block, shape", [(ConvNeXtV2Block(8), (2, 8, 4, 4)),
                                          (MHABlock(16, 2), (2, 5, 16))])
def test_a_single_block_profiles_on_its_own(block, shape, tracer):
    p = ttplan.profile(block, shape, tracing=ttplan.Tracing(tracer=tracer),
                       options={"convention": "pytorch"})
    assert p.totals["params"] == sum(q.numel() for q in block.parameters())
    assert p.warnings == [] and p.totals["unknown_ops"] == []
    names = [r["name"] for r in p.evaluation.rows]
    # ConvNeXtV2Block owns a module `norm` and calls x.norm(): two operators, two names.
    assert "norm" in names or isinstance(block, MHABlock)
    assert len(names) == len(set(names))


def test_export_of_linear_layers_says_it_can_express_nothing():
    from ttplan.planner.api import plan
    from ttplan.planner.policy.file import Policy
    from ttplan.planner.selection.sparseupdate import export_sparseupdate
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    d = plan(model, method="none", inputs=(2, 8)).to_dict()
    graph = trace(model, (2, 8))
    with pytest.raises(SpecError, match="trains no layer"):
        export_sparseupdate(Policy.from_dict(d), graph)
    d["layers"] = [{"name": "2", "update_weight": True, "update_bias": True,
                    "channel_axis": 0, "channels": None}]
    with pytest.raises(SpecError, match="can express none of this policy: it trains 2"):
        export_sparseupdate(Policy.from_dict(d), graph)


# ---- text models called with integer token ids (inputs=) ------------------------------------

def text_prof(name, update="all", tracer="auto", **kw):
    make, inputs = TEXT_MODELS[name]
    torch.manual_seed(0)
    return ttplan.profile(make(), inputs=inputs, update=update,
                          options={"convention": "pytorch"},
                          tracing=ttplan.Tracing(tracer=tracer), **kw)


@pytest.mark.parametrize("name", sorted(TEXT_MODELS))
def test_text_models_params_and_tracers(name):
    a, b = text_prof(name, tracer="fx"), text_prof(name, tracer="hooks")
    params = sum(p.numel() for p in TEXT_MODELS[name][0]().parameters())  # tied: counted once
    keys = ("params", "trainable_params", "forward_macs", "backward_macs", "blocks")
    assert {k: a.totals[k] for k in keys} == {k: b.totals[k] for k in keys}
    assert a.totals["params"] == a.totals["trainable_params"] == params
    for p in (a, b):
        assert p.totals["unknown_ops"] == [] and p.warnings == []
    assert a.memory.saved_activation_bytes == b.memory.saved_activation_bytes


@pytest.mark.parametrize("update", ["all", "bias-only", "last-blocks:2"])
@pytest.mark.parametrize("name", sorted(TEXT_MODELS))
def test_text_models_saved_bytes_match_autograd(name, update):
    v = text_prof(name, update, verify=True).verification
    assert v["measured_bytes"] > 0
    assert_close(v["predicted_bytes"], v["measured_bytes"])


def test_an_input_the_forward_does_not_take_names_the_ones_it_does():
    # `ids` where the forward calls it `input_ids`: the error names the forward's arguments.
    from ttplan.costmodel.errors import TraceError
    with pytest.raises(TraceError, match=r"does not take ids:int64\[2,8\]: .*"
                                         r"\(it takes input_ids, attention_mask\)$"):
        ttplan.profile(TEXT_MODELS["bert_like"][0](), inputs="ids:int64[2,8]")


def test_text_models_macs_by_hand():
    n, t, d, depth = 2, 8, 16, 2
    rows, attention = n * t, 2 * n * t * t * d  # q·kᵀ and p·v over both heads
    # BERT-like: q, k, v, output d×d, FFN d×2d and back; pooler d×d, classifier d×3 on
    # the first token; embeddings cost no MACs.
    bert = 4 * linear(rows, d, d) + 2 * linear(rows, d, 2 * d)
    tail = linear(n, d, d) + linear(n, d, 3)
    assert text_prof("bert_like").totals["forward_macs"] == depth * (bert + attention) + tail
    t_ = text_prof("bert_like").totals
    assert (t_["backward_input_macs"], t_["backward_weight_macs"]) == (
        depth * (bert + 2 * attention) + tail, depth * bert + tail)
    # GPT-like: Conv1D (addmm) d×3d, d×d, d×4d, 4d×d; the tied LM head d×vocab per token.
    gpt, lm_head = linear(rows, d, 3 * d) + linear(rows, d, d) + 2 * linear(rows, d, 4 * d), \
        linear(rows, d, 50)
    t_ = text_prof("gpt_like").totals
    assert (t_["forward_macs"], t_["backward_input_macs"], t_["backward_weight_macs"]) == (
        depth * (gpt + attention) + lm_head, depth * (gpt + 2 * attention) + lm_head,
        depth * gpt + lm_head)


class _NoRules(nn.Module):
    """Operators without a rule of their own: a product (tensordot), element-wise ops that
    keep tensors (erfcx, softplus, logsumexp), views and copies that keep nothing (narrow,
    flip), and a torch.nn module without a rule (Mish)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.w = nn.Parameter(torch.randn(8, 8))
        self.act = nn.Mish()

    def forward(self, x):
        x = self.act(self.fc(x))
        t = torch.tensordot(torch.special.erfcx(x), self.w, dims=1)
        u = x.narrow(1, 0, 4).flip(0)
        v = torch.logsumexp(x, 1, keepdim=True)
        return t.sum() + u.sum() + v.sum() + torch.nn.functional.softplus(x).sum()


@pytest.mark.parametrize("tracer", TRACERS)
def test_operators_without_a_rule_are_derived(tracer):
    p = ttplan.profile(_NoRules(), (4, 8), tracing=ttplan.Tracing(tracer=tracer),
                       options={"convention": "pytorch"})
    kinds = {r["op"]: r["kind"] for r in p.evaluation.rows}
    assert kinds["tensordot"] == kinds["narrow"] == kinds["flip"] == "derived"
    assert p.totals["unknown_ops"] == []
    fc, product = linear(4, 8, 8), 4 * 8 * 8  # tensordot counted on the operator
    assert p.totals["forward_macs"] == fc + product
    assert p.totals["backward_macs"] == fc + 2 * product  # x and w both need a gradient
    warned = " ".join(p.warnings)
    assert "tensordot" in warned and "derived" in warned
    assert "narrow" not in warned and "flip" not in warned  # no MACs, nothing kept
    for update in ("all", "bias-only"):
        predicted, measured = predicted_and_measured(_NoRules(), (4, 8), update)
        assert predicted == measured


# ---- the CLI ------------------------------------------------------------------------------------

def _cli(*args):
    from typer.testing import CliRunner
    from ttplan.cli import app
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_fisher_plan_profile_a_multihead_attention_model(tmp_path):
    fisher, policy = tmp_path / "f.json", tmp_path / "p.json"
    model = "tests.construct_models:mha_vit"
    result = _cli("fisher", model, "--synthetic", "--samples", "4", "--input-shape", "1,3,8,8",
                  "--out", fisher)
    assert result.exit_code == 0, result.output
    import json
    probed = [layer["name"] for layer in json.loads(fisher.read_text())["layers"]]
    assert "blocks.2.attn" in probed and not any("out_proj" in n for n in probed)
    result = _cli("plan", model, "--fisher", fisher, "--input-shape", "1,3,8,8", "--memory",
                  "400kB", "--compute", "90%", "--out", policy)
    assert result.exit_code == 0, result.output
    result = _cli("profile", model, "--input-shape", "2,3,8,8", "--convention", "pytorch",
                  "--verify")
    assert result.exit_code == 0 and "(+0.00%)" in result.stderr, result.output
    assert "warning" not in result.stderr


def test_cli_export_of_a_plan_of_linear_layers_is_a_one_line_error(tmp_path):
    policy = tmp_path / "q.json"
    model = "tests.construct_models:mlp"
    result = _cli("plan", model, "--method", "fulltrain", "--input-shape", "1,3,8,8", "--out",
                  policy)
    assert result.exit_code == 0, result.output
    result = _cli("export", policy, "--model", model)
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "express none" in lines[0]


def test_plan_table_shows_no_bias_where_a_layer_has_none():
    # The policy's bias flag is set for every layer fulltrain picks; a class token has no bias.
    result = _cli("plan", "tests.construct_models:mha_vit", "--method", "fulltrain",
                  "--input-shape", "1,3,8,8")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()
            if line.startswith(("cls_token ", "patch_embed ", "head "))}
    assert rows == {"cls_token": ["yes", "-", "all"], "patch_embed": ["yes", "yes", "all"],
                    "head": ["yes", "yes", "all"]}


class _Powers(nn.Module):
    """x ** 3 keeps x; 2 ** x keeps x and the result; x ** y (y = x too) keeps x, y, result."""

    def __init__(self):
        super().__init__()
        self.fc, self.g = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc(x)
        return (2 ** h) + h ** 3 + torch.pow(h, h) + h.pow(self.g(x))


@pytest.mark.parametrize("update", ["all", "bias-only"])
def test_every_form_of_pow_keeps_what_autograd_keeps(update):
    for tracer in TRACERS:
        p = ttplan.profile(_Powers(), (2, 4), tracing=ttplan.Tracing(tracer=tracer), update=update,
                           options={"convention": "pytorch"})
        assert p.warnings == []
        predicted, measured = predicted_and_measured(_Powers(), (2, 4), update)
        assert p.memory.saved_activation_bytes == predicted == measured


class _SelfSDPA(nn.Module):
    """Attention of a sequence with itself: sdpa(x, x, x), one graph input three times."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        h = self.fc(x).unflatten(-1, (2, 4)).transpose(1, 2)
        return torch.nn.functional.scaled_dot_product_attention(h, h, h).sum((1, 2))


def test_sdpa_of_one_tensor_with_itself():
    n, heads, length, head_dim = 2, 2, 5, 4
    attention = 2 * n * heads * length * length * head_dim
    fc = linear(n * length, 8, 8)
    for tracer in TRACERS:
        t = ttplan.profile(_SelfSDPA(), (n, length, 8),
                           tracing=ttplan.Tracing(tracer=tracer)).totals
        assert t["forward_macs"] == fc + attention
        assert t["backward_input_macs"] == 2 * attention  # dV, dP, dQ, dK
        predicted, measured = predicted_and_measured(_SelfSDPA(), (n, length, 8), "all")
        assert predicted == measured


class _Square(nn.Module):
    """A product of a tensor with itself: h @ h (one graph input, both operands)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        h = self.fc(x)
        return (h @ h).sum(-1)


def test_a_product_of_a_tensor_with_itself():
    n, d = 3, 6  # x: 3×6×6, h @ h: 3 products of 6×6 by 6×6
    fc, product = linear(n * d, d, d), n * d * d * d
    for tracer in TRACERS:
        t = ttplan.profile(_Square(), (n, d, d), tracing=ttplan.Tracing(tracer=tracer)).totals
        assert (t["forward_macs"], t["backward_input_macs"]) == (fc + product, 2 * product)
    predicted, measured = predicted_and_measured(_Square(), (n, d, d), "all")
    assert predicted == measured


def test_timm_drop_path_keeps_only_its_per_sample_mask():
    """x * mask, the mask made by new_empty → bernoulli_ → div_ in place: no gradient flows
    into the mask (measured on the call: new_empty's result needs none), so MulBackward0 keeps the
    mask alone, N × 1 × 1 × 1 floats: 2 samples × 4 B per block, 2 blocks = 16 B more than
    the same net without drop path (where the block returns x + y unchanged)."""
    shape = (2, 3, 8, 8)
    graph = trace(DropPathNet(), shape, "drop")
    assert [n.attrs.get("blocks_grad") for n in graph.ops() if n.op == "new_empty"] == [True] * 2
    with_drop, measured = predicted_and_measured(DropPathNet(), shape, "all")
    without, _ = predicted_and_measured(DropPathNet(drop=0.0), shape, "all")
    assert with_drop - without == 2 * 2 * 4
    assert with_drop == measured


@pytest.mark.parametrize("dropout, training_mode", [(0.0, True), (0.1, False), (0.1, True)])
@pytest.mark.parametrize("update", ["all", "bias-only"])
def test_padding_mask_keeps_what_the_fused_path_keeps(update, dropout, training_mode):
    """The key padding mask is measured as the model passes it, without a gradient: with
    dropout off (or in eval mode, as `ttplan train` runs modules) SDPA's fused path keeps
    the merged mask, N × heads × 1 × S floats; a mask given a gradient in the measurement
    took the math path and was priced 10 kB (30 %) over what autograd keeps."""
    from ttplan.costmodel.config import resolve_updates
    from ttplan.costmodel.measure import verify_saved_bytes
    from ttplan.costmodel.specs import parse_update
    model = PaddingMaskEncoder(dropout=dropout)
    x = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(0))
    graph = trace(model, x, "padded", tracer="hooks")
    check = verify_saved_bytes(model, graph, resolve_updates(parse_update(update), graph),
                               training_mode=training_mode)
    assert check["predicted_bytes"] == check["measured_bytes"]


@pytest.mark.parametrize("sliced, fill", [(True, False), (False, False), (True, True)])
@pytest.mark.parametrize("update", ["all", "bias-only"])
def test_a_mask_from_a_buffer_is_model_state(update, sliced, fill):
    """torch.where keeps its condition: a view of the model's buffer, which autograd's count
    (like the memory model) leaves out with parameters and buffers; it was priced as an
    activation of 8·8 B (the bool mask) per call. masked_fill keeps its mask alike, not its
    value tensor (the rule once took its second graph input for the mask)."""
    model = BufferMaskAttention(sliced=sliced, fill=fill)
    shape = (2, 8, 16)
    graph = trace(model, shape, "gpt2_mask", tracer="hooks")
    predicted, measured = predicted_and_measured(model, shape, update, graph)
    assert predicted == measured


class TrainingDropoutSDPA(nn.Module):
    """Hugging Face's SDPA idiom: dropout only while training, a padding mask (B × 1 × 1 × S)."""

    def __init__(self, dim=32, heads=4, p=0.1):
        super().__init__()
        self.heads, self.p = heads, p
        self.qkv, self.out, self.head = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), nn.Linear(dim, 4)

    def forward(self, x):
        b, n, d = x.shape
        mask = (x[..., :1] > -1.5).transpose(1, 2).unsqueeze(1)
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.p if self.training else 0.0)
        return self.head(self.out(y.transpose(1, 2).reshape(b, n, d)).mean(1))


@pytest.mark.parametrize("training_mode", [True, False])
def test_sdpa_dropout_only_while_training_is_measured_both_ways(training_mode):
    """Traced in train mode (dropout: the math path), run by `ttplan train` in eval mode (no
    dropout: the fused path, which keeps q, k, v, the output and a logsumexp): each mode's
    saved set is measured on the call (bias-only: nothing after the attention reads its
    output's layout). Under `all` pricing eval mode on this train-mode trace is one N × L × D
    tensor over: the fused path's output is laid out N × L × H × E, so the transpose-reshape
    after it is a view there and a copy on the math path; `ttplan train` traces in eval mode
    (tests/test_runner.py)."""
    from ttplan.costmodel.config import resolve_updates
    from ttplan.costmodel.measure import verify_saved_bytes
    from ttplan.costmodel.specs import parse_update
    model = TrainingDropoutSDPA()
    x = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(0))
    graph = trace(model, x, "hf_sdpa")
    check = verify_saved_bytes(model, graph, resolve_updates(parse_update("bias-only"), graph),
                               training_mode=training_mode)
    assert check["predicted_bytes"] == check["measured_bytes"]
