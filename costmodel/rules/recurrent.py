"""Recurrent layers: ``nn.LSTM``, ``nn.GRU``, ``nn.RNN``, and their one-step cells.

Forward MACs, per layer and direction: N·T·G·H·(I_l + H), the input and the hidden projection
of every time step (G gates: 4 LSTM, 3 GRU, 1 RNN; I_l the layer's input size, H·directions
above the first layer). Gate products and non-linearities are other ops. A cell
(``nn.LSTMCell`` …) is one step of one layer: N·G·H·(I + H), N times its weights' size.
"""

from __future__ import annotations

import torch.nn as nn

from ..graph import OpNode
from .common import layer_input, prod, pt_measured_module
from .rule import Grad, Operator, Rule, Saved, bias_grad_ops

# Gates per hidden unit (a layer's weight_ih is gates·H × input).
RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _directions(node: OpNode) -> int:
    return 2 if node.attrs.get("bidirectional") else 1


def rnn_projection_macs(node: OpNode) -> list[int]:
    """[input-projection MACs, hidden-projection MACs] summed over layers and directions."""
    a = node.attrs
    gates, hidden = RNN_GATES.get(node.op, 1), int(a.get("hidden_size", 0))
    layers, dirs = int(a.get("num_layers", 1)), _directions(node)
    x = node.in_shapes[0]
    steps = prod(x[:-1])  # N·T
    input_macs = hidden_macs = 0
    for layer in range(layers):
        size_in = int(x[-1]) if layer == 0 else hidden * dirs
        input_macs += dirs * steps * gates * hidden * size_in
        hidden_macs += dirs * steps * gates * hidden * hidden
    return [input_macs, hidden_macs]


def rnn_macs(node: OpNode) -> int:
    return sum(rnn_projection_macs(node))


def rnn_input_grads(node: OpNode, g: Grad) -> int:
    """Back-propagation through time: the hidden state's gradient every step (all layers'
    hidden projections) and the inputs of the layers above the first, whenever any gradient
    passes; the first layer's input projection only when the input needs a gradient."""
    input_macs, hidden_macs = rnn_projection_macs(node)
    x = node.in_shapes[0]
    first = _directions(node) * prod(x[:-1]) * RNN_GATES.get(node.op, 1) \
        * int(node.attrs.get("hidden_size", 0)) * int(x[-1])
    return hidden_macs + (input_macs - first) + (first if g.input(0) else 0)


def rnn_weight_grads(node: OpNode, g: Grad) -> int:
    """dW_ih and dW_hh: as many MACs as the forward projections."""
    return rnn_macs(node) if g.weight else 0


def _gate_values(node: OpNode, per_unit: int) -> int:
    """`per_unit` values per hidden unit, step, direction and layer."""
    a = node.attrs
    steps = prod(node.in_shapes[0][:-1])
    return steps * _directions(node) * int(a.get("num_layers", 1)) * per_unit * \
        int(a.get("hidden_size", 0))


def rnn_other_ops(node: OpNode) -> int:
    """Gate non-linearities and products: G + 3 per hidden unit and step (a count, not MACs)."""
    return _gate_values(node, RNN_GATES.get(node.op, 1) + 3)


def paper_rnn(node, g):
    """A.4-style: the layer input and, per step, the gate activations (G·H per sample and
    direction per layer) and the cell state, which the gradient of every gate needs."""
    if not g.any:
        return []
    kept = _gate_values(node, RNN_GATES.get(node.op, 1) + 1) * node.dtype_bytes
    return [layer_input(g), Saved(("extra", "gates"), kept)]


# ---- one step: nn.LSTMCell, nn.GRUCell, nn.RNNCell ----------------------------------------

def _cell_sizes(node: OpNode) -> tuple[int, int, int, int]:
    """(rows N, gates G, input size I, hidden size H); G from the weights, G·H·(I + H)."""
    x = node.in_shapes[0]
    hidden, size_in = int(node.attrs.get("hidden_size", 0)), int(x[-1])
    gates = node.weight_numel // max(hidden * (size_in + hidden), 1)
    return prod(x[:-1]), gates, size_in, hidden


def cell_macs(node: OpNode) -> int:
    rows, gates, size_in, hidden = _cell_sizes(node)
    return rows * gates * hidden * (size_in + hidden)


def cell_input_grads(node: OpNode, g: Grad) -> int:
    """dx through W_ih when the input needs it, dh through W_hh when the state does."""
    rows, gates, size_in, hidden = _cell_sizes(node)
    state = any(g.input(i) for i in range(1, len(node.inputs)))
    return rows * gates * hidden * (size_in * int(g.input(0)) + hidden * int(state))


def cell_weight_grads(node: OpNode, g: Grad) -> int:
    return cell_macs(node) if g.weight else 0


def cell_other_ops(node: OpNode) -> int:
    rows, gates, _, hidden = _cell_sizes(node)
    return rows * (gates + 3) * hidden


def paper_cell(node, g):
    """The input and the state (both weights' gradients read them) and the gate values."""
    if not g.any:
        return []
    rows, gates, _, hidden = _cell_sizes(node)
    kept = [layer_input(g)] + [Saved(("in", 1), category="input" if g.weight else "mask")
                               for _ in node.inputs[1:2]]
    return kept + [Saved(("extra", "gates"), rows * (gates + 1) * hidden * node.dtype_bytes)]


OPERATORS = (
    # What the fused cell kernel keeps is measured per situation on the real call.
    Operator("rnn_cell", Rule(cell_macs, cell_other_ops, pt_measured_module, paper_cell,
                              mac_layer=True, backward_input_macs=cell_input_grads,
                              backward_weight_macs=cell_weight_grads,
                              backward_other_ops=bias_grad_ops),
             modules=(nn.LSTMCell, nn.GRUCell, nn.RNNCell)),
    # What it keeps (oneDNN's workspace) is measured per situation on the real call.
    Operator("rnn", Rule(rnn_macs, rnn_other_ops, pt_measured_module, paper_rnn,
                         mac_layer=True, backward_input_macs=rnn_input_grads,
                         backward_weight_macs=rnn_weight_grads,
                         backward_other_ops=bias_grad_ops),
             modules=(nn.LSTM, nn.GRU, nn.RNN)),
)
