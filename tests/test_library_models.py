"""Exact on models built the way model libraries build them (tests/library_models.py).

For every model, under both tracers: parameters equal sum(p.numel()), no unknown operator,
and the `pytorch` convention's saved bytes equal what autograd keeps (saved_tensors_hooks)
within 1 % under all, bias-only and last-blocks:2 in training mode. Forward and backward
MACs are written out by hand for one model per family:

  conv  N·Cout·Hout·Wout·(Cin/groups)·k²     linear  rows·out·in
  attention  Q·Kᵀ and P·V: N·heads·L·L·head_dim each; backward: dQ, dK, dV and dP, each of
             that size, when q, k and v all need gradients
  LSTM/GRU   per layer N·T·G·H·(I_l + H), G = 4 / 3; weight gradient = forward; the input
             gradient of back-propagation through time N·T·G·H·H per layer always, plus
             N·T·G·H·I_l for the layers whose input needs a gradient
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import ttplan
from ttplan.costmodel.trace import trace
from tests.library_models import LIBRARY_MODELS, ConvNeXtLike, DropPath, ViTLike
from tests.model_checks import (conv, exactness_tests, profile_case,
                                 assert_forward_flops_match_flop_counter)
from tests.test_pytorch_convention import predicted_and_measured

pytestmark = pytest.mark.usefixtures("one_thread")

(test_params_counted_and_every_op_priced, test_both_tracers_cost_the_same,
 test_saved_bytes_match_autograd) = exactness_tests(LIBRARY_MODELS)
prof = functools.partial(profile_case, LIBRARY_MODELS)  # prof(name, update, tracer, **kw)


def test_mobilenet_bnact_macs_by_hand():
    n = 2  # width 8, 16×16 input
    stem = conv(n, 8, 8, 3, 3)
    ir_a = conv(n, 16, 8, 8, 1) + conv(n, 16, 8, 1, 3) + conv(n, 8, 8, 16, 1)  # ×2 blocks
    ir_b_pw = conv(n, 16, 8, 8, 1)  # first conv of the stride-2 block
    ir_b = ir_b_pw + conv(n, 16, 4, 1, 3) + conv(n, 16, 4, 16, 1)
    ir_c = conv(n, 32, 4, 16, 1) + conv(n, 32, 4, 1, 3) + conv(n, 16, 4, 32, 1)
    head = conv(n, 32, 4, 16, 1) + n * 5 * 32
    forward = stem + 2 * ir_a + ir_b + ir_c + head
    p = prof("mobilenet_bnact")
    assert p.totals["forward_macs"] == forward == 217_920
    assert p.totals["backward_weight_macs"] == forward
    assert p.totals["backward_input_macs"] == forward - stem  # the image needs no gradient
    # bias-only: the stem's BatchNormAct shift is trained, so every later layer passes a
    # gradient back, and no weight gradient is formed.
    b = prof("mobilenet_bnact", "bias-only")
    assert (b.totals["backward_input_macs"], b.totals["backward_weight_macs"]) == \
        (forward - stem, 0)
    # last-blocks:2 = blocks.1.0 and blocks.1.1 (the repeated units; not the head).
    last = prof("mobilenet_bnact", "last-blocks:2")
    assert last.graph.declared_blocks == ["blocks.0.0", "blocks.0.1", "blocks.1.0", "blocks.1.1"]
    assert last.totals["backward_weight_macs"] == ir_b + ir_c
    assert last.totals["backward_input_macs"] == ir_b - ir_b_pw + ir_c + head


def test_vit_macs_by_hand():
    n, tokens, dim, heads, head_dim = 2, 17, 16, 2, 8
    patch = conv(n, dim, 4, 3, 4)
    linears = n * tokens * (3 * dim * dim + dim * dim + dim * 2 * dim + 2 * dim * dim)
    attention = 2 * n * heads * tokens * tokens * head_dim  # q·kᵀ and p·v
    head = n * 5 * dim
    for name in ("vit_fused_unbind", "vit_explicit_chunk"):
        p = prof(name)
        assert p.totals["forward_macs"] == patch + 2 * (linears + attention) + head
        assert p.totals["backward_weight_macs"] == patch + 2 * linears + head
        assert p.totals["backward_input_macs"] == 2 * (linears + 2 * attention) + head


@pytest.mark.parametrize("name,gates,layers", [("lstm", 4, 1), ("gru2", 3, 2)])
def test_recurrent_macs_by_hand(name, gates, layers):
    n, t, i, h = 2, 4, 5, 8
    inputs = [i] + [h] * (layers - 1)
    rnn = sum(n * t * gates * h * (size + h) for size in inputs)
    head = n * 3 * h
    p = prof(name)
    assert p.totals["forward_macs"] == rnn + head
    assert p.totals["backward_weight_macs"] == rnn + head
    hidden = layers * n * t * gates * h * h
    upper_inputs = sum(n * t * gates * h * size for size in inputs[1:])
    assert p.totals["backward_input_macs"] == hidden + upper_inputs + head
    frozen = ttplan.profile(LIBRARY_MODELS[name](), LIBRARY_MODELS[name].input_shape,
                            update="last-layers:1", options={"convention": "pytorch"})
    assert frozen.totals["backward_macs"] == head  # only the head trains


def test_forward_flops_match_flop_counter():
    # Not the fused-attention ViT: flop_counter has no formula for the CPU flash-attention
    # kernel (it counts 0 there); its explicit twin checks the same attention MACs.
    assert_forward_flops_match_flop_counter(
        LIBRARY_MODELS, ("vit_explicit_chunk", "mixer", "text_encoder",
                         "gated_mlp", "resnet_getattr"))


def test_blocks_are_repeated_units():
    assert prof("convnext").graph.declared_blocks == [
        "stages.0.blocks.0", "stages.0.blocks.1", "stages.1.blocks.0", "stages.1.blocks.1"]
    assert prof("text_encoder").graph.declared_blocks == ["encoder.layer.0", "encoder.layer.1"]
    assert prof("resnet_getattr").graph.declared_blocks == [f"layers.{i}" for i in range(4)]
    named = prof("convnext", update="last-blocks:1", blocks=r"stages\.\d+")
    assert named.graph.declared_blocks == ["stages.0", "stages.1"]
    trained = {r["name"] for r in named.evaluation.rows if r["trainable"]}
    assert "stages.1.downsample.1" in trained and "head" not in trained
    with pytest.raises(ttplan.TtplanError, match="matches no module path"):
        prof("convnext", blocks=r"nothing\.here")


def test_free_parameters_are_layers():
    p = prof("vit_fused_unbind", update="all")
    free = {r["name"]: r["trainable_params"] for r in p.evaluation.rows if r["kind"] == "parameter"}
    assert free["cls_token"] == 16 and free["pos_embed"] == 17 * 16
    assert free["blocks.0.ls1.gamma"] == 16
    only = ttplan.profile(LIBRARY_MODELS["vit_fused_unbind"](), (2, 3, 16, 16),
                          update={"pos_embed": ttplan.LayerUpdate()},
                          options={"convention": "pytorch"})
    assert only.totals["trainable_params"] == 17 * 16
    assert only.totals["backward_weight_macs"] == 0  # it is added: no product to form


def test_apply_policy_trains_functional_norms_and_free_parameters():
    from ttplan.planner.api import plan
    from ttplan.planner.policy.apply import apply_policy
    case = LIBRARY_MODELS["mobilenet_bnact"]
    model = case()
    d = plan(model, method="none", inputs=case.input_shape).to_dict()
    d["layers"] = [{"name": "conv_stem", "update_weight": False, "update_bias": True,
                    "channel_axis": 0, "channels": None},
                   {"name": "blocks.0.0.conv_pw", "update_weight": True, "update_bias": True,
                    "channel_axis": 0, "channels": None}]
    applied = apply_policy(model, d)
    # BatchNormAct2d's shift trains with the stem's bias (through F.batch_norm), its scale
    # with a trained conv's weights.
    assert set(applied.trainable) == {"bn1.bias", "blocks.0.0.conv_pw.weight",
                                      "blocks.0.0.bn1.weight", "blocks.0.0.bn1.bias"}
    vit = ViTLike()
    d = plan(vit, method="none", inputs=(2, 3, 16, 16)).to_dict()
    d["layers"] = [{"name": "cls_token", "update_weight": True, "update_bias": False,
                    "channel_axis": 0, "channels": None}]
    assert set(apply_policy(vit, d).trainable) == {"cls_token"}


def test_dropout_p0_keeps_nothing_and_p_positive_keeps_its_mask():
    def saved(p_drop, path_p):
        model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(p_drop), nn.Linear(8, 8))
        net = nn.Sequential(model, _Residual(path_p))
        return predicted_and_measured(net, (4, 8), "all")

    for p_drop, path_p in ((0.0, 0.0), (0.3, 0.0), (0.0, 0.2), (0.3, 0.2)):
        predicted, measured = saved(p_drop, path_p)
        assert predicted == measured, (p_drop, path_p)


class _Residual(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.drop_path = DropPath(p)

    def forward(self, x):
        return x + self.drop_path(self.fc(x))


def test_optional_forward_argument_takes_its_default_under_fx():
    g = trace(ViTLike(), (1, 3, 16, 16))
    assert g.tracer == "fx" and g.warnings == []


def test_auto_falls_back_to_hooks_with_a_warning():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() >= 0 else -x

    p = ttplan.profile(DataDependent(), (2, 4))
    assert p.graph.tracer == "hooks"
    assert any("torch.fx could not trace" in w for w in p.warnings)


def test_unknown_ops_are_reported_once_per_kind_with_a_count():
    class Odd(nn.Module):
        def forward(self, x):
            for _ in range(3):
                x = torch.special.erfcx(x)
            return x

    # No rule, but derived from the call (issue 17): listed once, with the count.
    p = ttplan.profile(nn.Sequential(nn.Linear(4, 4), Odd()), (2, 4))
    assert p.totals["unknown_ops"] == []
    assert len(p.warnings) == 1 and "(3 calls" in p.warnings[0] and "derived" in p.warnings[0]
    # An operator of more inputs than derivation measures: NOT counted, said once.
    class Five(nn.Module):
        def forward(self, x):
            return torch.block_diag(x, x * 2, x * 3, x * 4, x * 5)

    p = ttplan.profile(nn.Sequential(nn.Linear(4, 4), Five(), Five()), (2, 4))
    assert len(p.totals["unknown_ops"]) == 2
    assert len(p.warnings) == 1 and "(2 calls" in p.warnings[0] and "NOT counted" in p.warnings[0]


def test_layernorm_over_channels_and_subclass_head():
    p = ttplan.profile(ConvNeXtLike(), (2, 3, 16, 16), update="bias-only",
                       options={"convention": "pytorch"})
    rows = {r["name"]: r for r in p.evaluation.rows}
    assert rows["stem.1"]["kind"] == "layernorm" and rows["stem.1"]["trainable_params"] == 8
    assert rows["head"]["kind"] == "linear" and rows["head"]["trainable_params"] == 5
