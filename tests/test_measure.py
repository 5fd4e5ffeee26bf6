"""Tests of costmodel.measure on tiny models whose saved bytes are derived by hand.

Sizes used throughout (float32 = 4 B):
  x8  = 1x3x8x8 input          -> 192 floats = 768 B
  h8  = 1x4x8x8 conv(3->4) out -> 256 floats = 1024 B
  x16 = 3x16 Linear input      -> 48 floats  = 192 B;  its Linear(16, 5) output 3x5 = 60 B
The model input `x` is counted (it is an activation the first layer keeps); parameters and
buffers are not.
"""

from __future__ import annotations


import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ttplan.costmodel.measure import (MeasuredSaved, format_records, measure_saved_bytes,
                               saved_bytes_by_graph_walk, verify_saved_bytes)

try:  # tests/ may or may not become a package; support both import styles
    from tests.varied_models import VARIED_MODELS, untraceable
except ImportError:  # pragma: no cover
    from varied_models import VARIED_MODELS, untraceable

X8_B, H8_B, X16_B, Y16_B = 768, 1024, 192, 60


def x8() -> torch.Tensor:
    return torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def x16() -> torch.Tensor:
    return torch.randn(3, 16, generator=torch.Generator().manual_seed(0))


def conv(cin: int = 3, cout: int = 4, k: int = 3, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


def freeze(m: nn.Module, only: str | None = None) -> nn.Module:
    """Freeze all parameters, or only those whose name ends with `only`."""
    for name, p in m.named_parameters():
        if only is None or name.endswith(only):
            p.requires_grad_(False)
    return m


def measure(model: nn.Module, x: torch.Tensor) -> MeasuredSaved:
    """measure_saved_bytes plus the invariants every measurement must satisfy."""
    m = measure_saved_bytes(model, x)
    assert m.unattributed_alive == 0, format_records(m)
    return m


class Fn(nn.Module):
    """Wraps a forward function so a test can write the graph inline."""

    def __init__(self, fn, **mods: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleDict(mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.mods, x)


# --- Linear -------------------------------------------------------------------------------

def test_trainable_linear_saves_its_input_only():
    torch.manual_seed(0)
    m = measure(nn.Linear(16, 5), x16())
    # mat1 = input (for dL/dW). mat2 (= W.t(), for dL/dx) is saved only if x requires grad.
    assert m.saved_bytes == X16_B
    assert {r.saved_name: r.kind for r in m.records} == {"mat1": "input"}
    assert all(r.grad_fn == "AddmmBackward0" for r in m.records)


def test_frozen_linear_on_plain_input_saves_nothing():
    m = measure(freeze(nn.Linear(16, 5)), x16())
    assert m.saved_bytes == 0 and m.records == []


def test_linear_bias_only_saves_nothing():
    # dL/db needs only grad_output; addmm saves mat1 only when the weight needs grad.
    m = measure(freeze(nn.Linear(16, 5), only="weight"), x16())
    assert m.saved_bytes == 0 and m.records == []


def test_frozen_linear_after_trainable_one_saves_only_its_weight():
    # Linear2's input requires grad, but dL/dx2 = g @ W2 needs only W2 (a parameter).
    m = measure(nn.Sequential(nn.Linear(16, 5), freeze(nn.Linear(5, 5))), x16())
    assert m.saved_bytes == X16_B


def test_linear_3d_input_saves_a_view_of_its_input_storage():
    x = torch.randn(2, 3, 16)  # 384 B, saved as a 6x16 view
    m = measure(nn.Linear(16, 5), x)
    assert m.saved_bytes == 384
    (rec,) = [r for r in m.records if r.kind == "input"]
    assert rec.shape == (6, 16) and rec.storage_nbytes == 384


# --- Conv ---------------------------------------------------------------------------------

def test_frozen_conv_on_plain_input_saves_nothing():
    m = measure(freeze(conv()), x8())
    assert m.saved_bytes == 0 and m.records == []


def test_trainable_conv_saves_input_and_weight_but_weight_is_excluded():
    m = measure(conv(), x8())
    assert m.saved_bytes == X8_B
    assert {r.saved_name: r.kind for r in m.records} == {"input": "input", "weight": "parameter"}


def test_frozen_conv_whose_input_requires_grad_still_saves_its_input():
    # ConvolutionBackward0 saves input and weight whenever any of its inputs needs grad.
    m = measure(nn.Sequential(conv(), freeze(conv(4, 4))), x8())
    assert m.saved_bytes == X8_B + H8_B


def test_conv_bias_only_still_saves_its_input():
    m = measure(freeze(conv(), only="weight"), x8())
    assert m.saved_bytes == X8_B


def test_two_convs_reading_the_same_input_count_it_once():
    model = Fn(lambda ms, x: ms["a"](x) + ms["b"](x), a=conv(), b=conv())
    m = measure(model, x8())
    assert m.saved_bytes == X8_B  # add saves nothing; both convs save the same storage
    assert len({r.storage_index for r in m.records if r.kind == "input"}) == 1


# --- Activations and dedup ----------------------------------------------------------------

def test_relu_saves_its_output():
    m = measure(nn.Sequential(nn.Linear(16, 5), nn.ReLU()), x16())
    assert m.saved_bytes == X16_B + Y16_B
    relu = [r for r in m.records if r.grad_fn == "ReluBackward0"]
    assert [(r.saved_name, r.shape, r.nbytes) for r in relu] == [("result", (3, 5), Y16_B)]


def test_relu_output_shared_with_next_conv_input_counts_once():
    m = measure(nn.Sequential(conv(), nn.ReLU(), conv(4, 4)), x8())
    assert m.saved_bytes == X8_B + H8_B
    relu = next(r for r in m.records if r.grad_fn == "ReluBackward0")
    conv2_in = [r for r in m.records if r.grad_fn == "ConvolutionBackward0"
                and r.saved_name == "input" and r.kind == "activation"]
    assert conv2_in[0].storage_index == relu.storage_index


@pytest.mark.parametrize("inplace", [False, True])
def test_relu6_saves_its_input_in_place_or_not(inplace):
    # hardtanh saves self; hardtanh_ saves a clone of self. Either way the next conv also
    # saves ReLU6's output, a second storage.
    m = measure(nn.Sequential(conv(), nn.ReLU6(inplace=inplace), conv(4, 4)), x8())
    assert m.saved_bytes == X8_B + H8_B + H8_B


@pytest.mark.parametrize("act, act_bytes", [
    (nn.ReLU(inplace=True), 0),      # relu_ saves its result = the next conv's input
    (nn.ReLU(), 0),                  # same storage sharing, out of place
    (nn.ReLU6(inplace=True), H8_B),  # clone of the BN output
    (nn.ReLU6(), H8_B),
])
def test_conv_bn_act_conv_chain(act, act_bytes):
    # conv1 saves x; BN saves its input (conv1 out) and mean + invstd (4 floats each);
    # conv2 saves its input (act out).
    model = nn.Sequential(conv(bias=False), nn.BatchNorm2d(4), act, conv(4, 4)).train()
    m = measure(model, x8())
    assert m.saved_bytes == X8_B + H8_B + 2 * 16 + H8_B + act_bytes


def test_saved_view_counts_its_whole_storage():
    # silu saves its input, here a 2-channel slice (512 B) of the 4-channel conv output.
    model = Fn(lambda ms, x: F.silu(ms["c"](x)[:, :2]), c=conv())
    m = measure(model, x8())
    (silu,) = [r for r in m.records if r.grad_fn == "SiluBackward0"]
    assert silu.nbytes == H8_B // 2 and silu.storage_nbytes == H8_B
    assert m.saved_bytes == X8_B + H8_B


def test_dead_branch_is_not_counted_but_was_packed():
    def fwd(ms, x):
        y = torch.relu(ms["l"](x))
        torch.sigmoid(y)  # result thrown away: its node and saved output are freed
        return y * 2      # mul by a Python scalar saves nothing
    m = measure(Fn(fwd, l=nn.Linear(16, 5)), x16())
    assert m.saved_bytes == X16_B + Y16_B
    assert m.packed_bytes == X16_B + 2 * Y16_B
    assert [r.alive for r in m.records].count(False) == 1


def test_se_style_mul_saves_both_operands():
    # x * s with s = sigmoid(mean(x)): mul saves x (1024 B) and s (16 B); sigmoid saves s.
    def fwd(ms, x):
        h = ms["c"](x)
        return h * torch.sigmoid(h.mean((2, 3), keepdim=True))
    m = measure(Fn(fwd, c=conv()), x8())
    assert m.saved_bytes == X8_B + H8_B + 16


# --- Norms, pooling, dropout --------------------------------------------------------------

def test_batchnorm_train_saves_input_and_two_stats_excluding_buffers():
    model = nn.Sequential(conv(bias=False), nn.BatchNorm2d(4)).train()
    m = measure(model, x8())
    assert m.saved_bytes == X8_B + H8_B + 16 + 16
    bn = {r.saved_name: (r.kind, r.shape, r.dtype) for r in m.records
          if r.grad_fn == "NativeBatchNormBackward0"}
    assert bn == {"input": ("activation", (1, 4, 8, 8), torch.float32),
                  "weight": ("parameter", (4,), torch.float32),
                  "running_mean": ("buffer", (4,), torch.float32),
                  "running_var": ("buffer", (4,), torch.float32),
                  "result1": ("activation", (4,), torch.float32),   # save_mean
                  "result2": ("activation", (4,), torch.float32)}   # save_invstd


def test_batchnorm_eval_saves_input_and_empty_stats():
    model = nn.Sequential(conv(bias=False), nn.BatchNorm2d(4)).eval()
    assert measure(model, x8()).saved_bytes == X8_B + H8_B


def test_frozen_batchnorm_on_plain_input_saves_nothing():
    assert measure(freeze(nn.BatchNorm2d(3)).train(), x8()).records == []


def test_maxpool_saves_input_and_int64_indices():
    model = nn.Sequential(conv(k=1), nn.MaxPool2d(2))
    m = measure(model, torch.randn(1, 3, 4, 4))  # x 192 B; conv out 1x4x4x4 = 256 B
    (idx,) = [r for r in m.records if r.saved_name == "result1"]
    assert idx.dtype == torch.int64 and idx.shape == (1, 4, 2, 2)
    assert m.saved_bytes == 192 + 256 + 16 * 8


@pytest.mark.parametrize("size, pool_bytes", [(1, 0), (2, 256)])
def test_adaptive_avg_pool_to_one_is_a_mean_and_saves_nothing(size, pool_bytes):
    model = nn.Sequential(conv(k=1), nn.AdaptiveAvgPool2d(size))
    assert measure(model, torch.randn(1, 3, 4, 4)).saved_bytes == 192 + pool_bytes


@pytest.mark.parametrize("train, mask_bytes", [(True, Y16_B), (False, 0)])
def test_dropout_saves_a_float32_mask_in_train_mode(train, mask_bytes):
    model = nn.Sequential(nn.Linear(16, 5), nn.Dropout(0.5)).train(train)
    m = measure(model, x16())
    assert m.saved_bytes == X16_B + mask_bytes
    masks = [r for r in m.records if r.grad_fn == "MulBackward0"]
    assert [(r.dtype, r.shape) for r in masks] == ([(torch.float32, (3, 5))] if train else [])


def test_views_add_cat_mean_save_nothing():
    def fwd(ms, x):
        h = ms["c"](x)
        t = torch.cat([h, h + 1], 1).flatten(1).reshape(2, -1).view(-1)
        return t.mean() + F.interpolate(h, scale_factor=2.0, mode="nearest").mean((2, 3)).sum()
    assert measure(Fn(fwd, c=conv()), x8()).saved_bytes == X8_B


# --- Contract -----------------------------------------------------------------------------

def test_mode_and_requires_grad_are_left_as_the_caller_set_them():
    model = nn.Sequential(conv(bias=False), nn.BatchNorm2d(4)).eval()
    freeze(model[0])
    x = x8()
    measure(model, x)
    assert not model.training and not model[1].training
    assert [p.requires_grad for p in model.parameters()] == [False, True, True]
    assert not x.requires_grad


def test_grad_mode_off_at_the_caller_does_not_hide_saving():
    with torch.no_grad():
        assert measure(conv(), x8()).saved_bytes == X8_B


def test_records_tuple_starts_with_the_debug_fields():
    (rec, _) = measure(conv(), x8()).records
    grad_fn, shape, dtype, nbytes, storage_index = rec[:5]
    assert (grad_fn, shape, dtype, nbytes, storage_index) == (
        "ConvolutionBackward0", (1, 3, 8, 8), torch.float32, X8_B, 0)


# --- Varied models ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(VARIED_MODELS))
def test_varied_model_hook_and_walk_agree(name):
    case = VARIED_MODELS[name]
    x = case.example_input()
    m = measure(case().train(), x)
    assert m.saved_bytes > 0 and m.packed_bytes == m.saved_bytes
    assert saved_bytes_by_graph_walk(case().train(), x) == m.saved_bytes


@pytest.mark.parametrize("name", sorted(VARIED_MODELS))
def test_varied_model_is_traceable_and_deterministic(name):
    # (No timing here: speed targets live in benchmarks/, the test machines are shared.)
    case = VARIED_MODELS[name]
    assert case.input_shape == (1, 3, 32, 32)
    a, b = case(), case()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    torch.fx.symbolic_trace(a)
    assert a(case.example_input()).isfinite().all()


def test_untraceable_is_separate_and_fails_fx_but_measures_eagerly():
    assert untraceable not in VARIED_MODELS.values()
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(untraceable())
    m = measure(untraceable().train(), untraceable.example_input())
    assert m.saved_bytes > 0


# --- The input, and --verify where PyTorch refuses train mode -----------------------------

def test_input_cut_from_a_larger_tensor_counts_the_batch_only():
    # A trained first conv saves its input; x8 cut from a 5-sample tensor is a view of 5 x 768 B.
    samples = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    m = measure(nn.Sequential(conv()), samples[:1])
    (record,) = [r for r in m.records if r.kind == "input"]
    assert record.storage_nbytes == X8_B and m.saved_bytes == X8_B


class PooledBN(nn.Module):
    """conv -> pool to 1x1 -> BatchNorm: at batch 1 the BN sees one value per channel."""

    def __init__(self):
        super().__init__()
        self.c, self.bn, self.l = conv(bias=False), nn.BatchNorm2d(4), nn.Linear(4, 3)

    def forward(self, x):
        return self.l(torch.relu(self.bn(F.adaptive_avg_pool2d(self.c(x), 1))).flatten(1))


def test_verify_at_one_value_per_channel_measures_batches_2_and_3():
    from ttplan.costmodel.profile import profile
    prof = profile(PooledBN(), (1, 3, 8, 8), update="all", options=None)
    v = verify_saved_bytes(PooledBN(), prof.graph, prof.config.updates)
    assert v["measured_batches"] == [2, 3]
    assert v["measured_bytes"] == v["predicted_bytes"] > 0
    with pytest.raises(ValueError, match="more than 1 value per channel"):  # why: PyTorch refuses
        PooledBN().train()(x8())


@pytest.mark.parametrize("update", ["all", "bias-only", "last-layers:1"])
def test_saved_bytes_are_affine_in_the_batch(update):
    # The extrapolation's premise, measured: on a BN net that runs at batch 1, the line
    # through batches 2 and 3 gives batch 1's bytes exactly.
    from ttplan.costmodel.profile import profile
    model = nn.Sequential(conv(bias=False), nn.BatchNorm2d(4), nn.ReLU(), conv(4, 4))
    got = {}
    for batch in (1, 2, 3):
        prof = profile(model, (batch, 3, 8, 8), update=update)
        got[batch] = verify_saved_bytes(model, prof.graph, prof.config.updates)
        assert got[batch]["measured_batches"] == [batch]
        assert got[batch]["measured_bytes"] == got[batch]["predicted_bytes"]
    m = {b: v["measured_bytes"] for b, v in got.items()}
    assert m[1] == 2 * m[2] - m[3]
