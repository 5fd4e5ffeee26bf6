"""Attention: ``F.scaled_dot_product_attention`` (no weights) and ``nn.MultiheadAttention``
(q, k, v and output projections around it).

Q·Kᵀ costs N·H·L·S·E MACs and P·V N·H·L·S·Ev (q is N…×L×E, k N…×S×E, v N…×S×Ev); the softmax
over the N·H·L·S scores is other ops.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from ..graph import OpNode
from ..options import FP32_BYTES
from .common import layer_input, prod, pt_measured, pt_measured_module
from .rule import NO_BACKWARD_MACS, Grad, Operator, Rule, Saved, on_gradient_path

# ---- F.scaled_dot_product_attention --------------------------------------------------------


def _sdpa_operands(node: OpNode) -> tuple[list, list]:
    """Shapes of q, k, v and the graph input each one is (an index of `node.inputs`): the
    call's own operands when recorded (sdpa(x, x, x) is one graph input three times)."""
    shapes = node.attrs.get("qkv_shapes")
    if shapes and len(shapes) == 3:
        return [tuple(s) for s in shapes], list(node.attrs.get("qkv_inputs") or [0, 1, 2])
    return (list(node.in_shapes) + [()] * 3)[:3], [0, 1, 2]


def sdpa_macs(node: OpNode) -> int:
    (q, k, v), _ = _sdpa_operands(node)
    if not (q and k and v):
        return 0
    rows = prod(q[:-1])  # N·H·L
    return rows * int(k[-2]) * int(q[-1]) + rows * int(k[-2]) * int(v[-1])


def sdpa_input_grads(node: OpNode, g: Grad) -> int:
    """dV = Pᵀ·dO (S·L·Ev per head) if v needs it; dP = dO·Vᵀ (L·S·Ev) if q or k does;
    dQ = dS·K (L·S·E) if q does; dK = dSᵀ·Q (S·L·E) if k does."""
    (q, k, v), where = _sdpa_operands(node)
    rows, s = prod(q[:-1]), int(k[-2])
    e, ev = int(q[-1]), int(v[-1])
    dq, dk, dv = (i is not None and g.input(i) for i in where)
    dmask = any(g.input(i) for i in range(len(node.inputs)) if i not in where)  # a bias mask
    return rows * s * (ev * (int(dv) + int(dq or dk or dmask)) + e * (int(dq) + int(dk)))


def sdpa_softmax_ops(node: OpNode) -> int:
    (q, k, _), _ = _sdpa_operands(node)
    return prod(q[:-1]) * int(k[-2]) if q and k else 0


def pt_sdpa(node, g):
    # Modules in eval mode (`ttplan train`) run no dropout: without a mask, the flash path.
    eval_flash = not g.training_mode and not node.attrs.get("attn_mask")
    # under autocast: measured in both modes on the call under it (graph_builder)
    if "measured_saved" in node.attrs and (not eval_flash or "measured_saved_eval" in node.attrs
                                           or node.attrs.get("autocast_bytes")):
        # Dropout or an attention mask: PyTorch takes the math path (scaled q, kᵀ, the
        # probabilities, the dropout mask, v), measured on the real call while tracing, and
        # without its dropout for eval mode (`measured_saved_eval`).
        return pt_measured(node, g)
    # The CPU flash-attention kernel keeps q, k, v, the output and a float32 logsumexp of
    # N·H·L, whichever input needs a gradient (measured; dropout_p > 0 takes another path).
    (q, _, _), where = _sdpa_operands(node)
    rows = prod(q[:-1]) if q else 0
    saved = [Saved(("in", i)) for i in sorted({i for i in where if i is not None})
             if i < len(node.inputs)]
    return saved + [Saved(("out",)), Saved(("extra", "logsumexp"), FP32_BYTES * rows)]


def paper_sdpa(node, g):
    """An engine without recomputation keeps q, k, v and the attention probabilities
    (N·H·L·S), as the explicit softmax(q·kᵀ)·v would."""
    if not g.any:
        return []
    (q, k, _), where = _sdpa_operands(node)
    probs = prod(q[:-1]) * int(k[-2])
    return [Saved(("in", i)) for i in sorted({i for i in where if i is not None})] + [
        Saved(("extra", "probabilities"), probs * node.dtype_bytes)]


# ---- nn.MultiheadAttention -----------------------------------------------------------------

def mha_sizes(node: OpNode) -> tuple[int, int, int, int, int, int]:
    """(query rows N·L, key rows N·S, S, E, kdim, vdim) of a MultiheadAttention call."""
    a = node.attrs
    shapes = a.get("mha_shapes") or {}
    q = shapes.get("query") or list(node.in_shapes[0])
    k = shapes.get("key") or q
    seq_dim = 1 if a.get("batch_first") and len(k) == 3 else 0
    return (prod(q[:-1]), prod(k[:-1]), int(k[seq_dim]), int(a.get("embed_dim", q[-1])),
            int(a.get("kdim") or q[-1]), int(a.get("vdim") or q[-1]))


def mha_projection_macs(node: OpNode) -> tuple[int, int]:
    """(input projections, output projection): q, k, v projected to E (rows·E·size_in each),
    and the attention output projected E → E."""
    rows_q, rows_k, _, e, kdim, vdim = mha_sizes(node)
    return rows_q * e * e + rows_k * e * (kdim + vdim), rows_q * e * e


def mha_attention_macs(node: OpNode) -> int:
    """Q·Kᵀ and P·V over all heads: 2·N·L·S·E (heads × head_dim = E)."""
    rows_q, _, s, e, _, _ = mha_sizes(node)
    return 2 * rows_q * s * e


def mha_macs(node: OpNode) -> int:
    return sum(mha_projection_macs(node)) + mha_attention_macs(node)


def mha_input_grads(node: OpNode, g: Grad) -> int:
    """Every gradient of a MultiheadAttention call (its weights, biases or input) goes back
    through the output projection (rows·E·E) and the attention (dV, dP, dQ, dK: 4·N·L·S·E);
    the input projections' input gradient only when the input needs one."""
    into, out = mha_projection_macs(node)
    return out + 2 * mha_attention_macs(node) + (into if g.input(0) else 0)


def mha_weight_grads(node: OpNode, g: Grad) -> int:
    return round(sum(mha_projection_macs(node)) * g.weight_fraction) if g.weight else 0


def mha_softmax_ops(node: OpNode) -> int:
    """The softmax over N·heads·L·S scores."""
    rows_q, _, s, _, _, _ = mha_sizes(node)
    return rows_q * int(node.attrs.get("num_heads", 1)) * s


def paper_mha(node, g):
    """A.4-style: the input (for the projections' weight gradient), q, k, v, the attention
    probabilities and the attention output (for the output projection's)."""
    if not g.any:
        return []
    rows_q, rows_k, s, e, _, _ = mha_sizes(node)
    heads = int(node.attrs.get("num_heads", 1))
    kept = (2 * rows_q * e + 2 * rows_k * e + rows_q * heads * s) * node.dtype_bytes
    return [layer_input(g), Saved(("extra", "qkv_probabilities_output"), kept)]


OPERATORS = (
    Operator("sdpa", Rule(sdpa_macs, sdpa_softmax_ops, pt_sdpa, paper_sdpa,
                          backward_input_macs=sdpa_input_grads,
                          backward_weight_macs=NO_BACKWARD_MACS),
             functions=(F.scaled_dot_product_attention,)),
    # Its saved set (which internal path runs) is measured per situation on the real call.
    Operator("mha", Rule(mha_macs, mha_softmax_ops, pt_measured_module, paper_mha,
                         mac_layer=True, backward_input_macs=mha_input_grads,
                         backward_weight_macs=mha_weight_grads,
                         backward_other_ops=on_gradient_path(mha_softmax_ops)),
             modules=(nn.MultiheadAttention,)),
)
