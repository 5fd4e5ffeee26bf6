"""torch.nn's own modules that have no rule of their own, and the eval mode `ttplan train` runs.

* nn.TransformerEncoder / nn.TransformerEncoderLayer: traced into (attention, norms, linears),
  not one unknown operator; with dropout, eval mode keeps less (no masks, the flash path).
* nn.PReLU (and F.prelu): its own kind; the slopes train; it keeps its input.
* nn.RMSNorm: traced into F.rms_norm and a trainable weight.
* nn.LSTMCell / nn.GRUCell / nn.RNNCell unrolled by hand: one step of one layer,
  N·G·H·(I + H) MACs (N times the weights' size), weight gradient the same, the input
  gradient N·G·H·I when the input needs one plus N·G·H·H when the state does.
Saved bytes are checked against autograd (saved_tensors_hooks) in train and in eval mode.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ttplan
from ttplan.costmodel.config import TrainConfig, parameter_requires_grad, resolve_updates
from ttplan.costmodel.costs import evaluate
from ttplan.costmodel.measure import measure_saved_bytes
from ttplan.costmodel.options import CostOptions
from ttplan.costmodel.specs import parse_update
from ttplan.costmodel.trace import trace
from ttplan.devices.trainloop import _first_updated

pytestmark = pytest.mark.usefixtures("one_thread")


class StockEncoder(nn.Module):
    def __init__(self, norm_first=False):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(30, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True,
                                           norm_first=norm_first)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, ids):
        return self.head(self.enc(self.emb(ids)).mean(1))


class PReLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.PReLU(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.slope = nn.Parameter(torch.full((1,), 0.25))
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.prelu(self.conv2(self.act(self.conv(x))), self.slope)
        return self.fc(x.mean((2, 3)))


class RMSNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.Linear(8, 16)
        self.norm = nn.RMSNorm(16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        return self.out(self.norm(F.gelu(self.up(x))))


class Cells(nn.Module):
    """An LSTMCell then a GRUCell, unrolled over T steps of N x I inputs."""

    def __init__(self, size_in=6, hidden=5):
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTMCell(size_in, hidden)
        self.gru = nn.GRUCell(hidden, hidden)
        self.fc = nn.Linear(hidden, 2)

    def forward(self, x):  # N x T x I
        h = c = g = None
        for t in range(x.shape[1]):
            h, c = self.lstm(x[:, t]) if h is None else self.lstm(x[:, t], (h, c))
            g = self.gru(h) if g is None else self.gru(h, g)
        return self.fc(g)


def _predicted_and_measured(model, x, update, training=True):
    graph = trace(model, inputs=x)
    config = TrainConfig(resolve_updates(parse_update(update), graph), CostOptions("pytorch"),
                         training)
    predicted = evaluate(graph, config).memory.saved_activation_bytes
    flags = parameter_requires_grad(graph, config)
    for name, param in model.named_parameters():
        param.requires_grad_(flags.get(name, False))
    model.train(training)
    return predicted, measure_saved_bytes(model, x).saved_bytes


def _ids():
    return torch.randint(0, 30, (2, 8), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("norm_first", [False, True])
def test_stock_transformer_encoder_is_traced_into_its_layers(norm_first):
    model = StockEncoder(norm_first)
    p = ttplan.profile(model, inputs=_ids(), options={"convention": "pytorch"})
    kinds = [r["kind"] for r in p.evaluation.rows]
    assert kinds.count("mha") == 2 and kinds.count("layernorm") == 4 and "unknown" not in kinds
    assert p.totals["params"] == p.totals["trainable_params"] == \
        sum(q.numel() for q in model.parameters())
    # Attention 2·N·L·S·E + projections 4·N·L·E², the feed-forward 2·N·L·E·F, per layer.
    n, seq, e, ff = 2, 8, 16, 32
    per_layer = 2 * n * seq * seq * e + 4 * n * seq * e * e + 2 * n * seq * e * ff
    assert p.totals["forward_macs"] == 2 * per_layer + n * e * 3


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("update", ["all", "bias-only", "last-blocks:1", "last-layers:2"])
def test_stock_transformer_saved_bytes_in_train_and_eval_mode(update, training):
    predicted, measured = _predicted_and_measured(StockEncoder(), _ids(), update, training)
    assert predicted == measured


def test_eval_mode_keeps_no_dropout_mask_and_takes_the_flash_path():
    train, _ = _predicted_and_measured(StockEncoder(), _ids(), "all", True)
    evaluated, _ = _predicted_and_measured(StockEncoder(), _ids(), "all", False)
    assert evaluated < 0.7 * train


@pytest.mark.parametrize("update", ["all", "bias-only", "last-layers:2", "last-layers:1"])
def test_prelu_keeps_its_input_and_its_slopes_train(update):
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    predicted, measured = _predicted_and_measured(PReLUNet(), x, update)
    assert predicted == measured
    p = ttplan.profile(PReLUNet(), (2, 3, 6, 6), options={"convention": "pytorch"})
    rows = {r["name"]: r for r in p.evaluation.rows}
    assert rows["act"]["kind"] == "prelu" and rows["act"]["trainable_params"] == 8
    assert p.totals["params"] == p.totals["trainable_params"] == \
        sum(q.numel() for q in PReLUNet().parameters())
    assert p.totals["unknown_ops"] == []


@pytest.mark.parametrize("update", ["all", "last-layers:1", "bias-only"])
def test_rmsnorm_is_traced_into_a_trainable_weight(update):
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    predicted, measured = _predicted_and_measured(RMSNet(), x, update)
    assert predicted == measured
    p = ttplan.profile(RMSNet(), (2, 5, 8))
    rows = {r["name"]: r for r in p.evaluation.rows}
    assert rows["norm.weight"]["kind"] == "parameter" and rows["norm.weight"]["trainable"]
    assert p.totals["trainable_params"] == sum(q.numel() for q in RMSNet().parameters())


def test_rnn_cells_macs_by_hand():
    n, steps, size_in, hidden = 3, 4, 6, 5
    p = ttplan.profile(Cells(size_in, hidden), (n, steps, size_in))
    lstm, gru = n * 4 * hidden * (size_in + hidden), n * 3 * hidden * (hidden + hidden)
    fc = n * hidden * 2
    assert p.totals["forward_macs"] == steps * (lstm + gru) + fc
    assert p.totals["backward_weight_macs"] == p.totals["forward_macs"]
    # The input (x[:, t]) needs no gradient; the states do from the second step on, and
    # the GRU's input (the LSTM's h) always.
    lstm_state = n * 4 * hidden * hidden
    gru_input, gru_state = n * 3 * hidden * hidden, n * 3 * hidden * hidden
    assert p.totals["backward_input_macs"] == \
        (steps - 1) * lstm_state + steps * gru_input + (steps - 1) * gru_state + fc
    kinds = {r["name"]: r["kind"] for r in p.evaluation.rows}
    assert kinds["lstm"] == kinds["gru#2"] == "rnn_cell"


@pytest.mark.parametrize("update", ["all", "bias-only", "last-layers:1"])
def test_rnn_cells_saved_bytes_match_autograd(update):
    x = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(0))
    predicted, measured = _predicted_and_measured(Cells(), x, update)
    assert predicted == measured


def test_the_runner_turns_gradients_on_where_a_free_parameter_is_read():
    model = RMSNet()
    graph = trace(model, (2, 5, 8))
    # Only the norm's weight and the head train: gradients must be on inside `norm`.
    first = _first_updated(graph, model, {"norm.weight": None, "out.weight": None})
    assert first is model.norm


def _padded_and_normed():
    torch.manual_seed(0)
    weight_norm = nn.utils.parametrizations.weight_norm
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
                         weight_norm(nn.Conv2d(8, 8, 3, padding=1)), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding="same", padding_mode="circular"),
                         nn.Flatten(), weight_norm(nn.Linear(8 * 64, 16)), nn.ReLU(),
                         nn.Linear(16, 3))


@pytest.mark.parametrize("update", ["all", "bias-only", "last-layers:1", "last-layers:2",
                                    "last-layers:3"])
def test_padding_modes_and_weight_norm_saved_bytes_match_autograd(update):
    # reflect / circular padding: the conv keeps the padded copy (2x3x10x10), not its input;
    # weight_norm: the weight computed at every call is a tensor of its own, kept
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    predicted, measured = _predicted_and_measured(_padded_and_normed(), x, update)
    assert predicted == measured


def test_weight_norm_trains_its_originals():
    model = _padded_and_normed()
    p = ttplan.profile(model, (2, 3, 8, 8), options={"convention": "pytorch"})
    total = sum(q.numel() for q in model.parameters())
    assert p.totals["params"] == p.totals["trainable_params"] == total
    assert p.memory.gradient_bytes == 4 * total
    assert p.totals["forward_macs"] == 2 * 8 * 64 * (3 * 9 + 8 * 9 + 8 * 9) + 2 * 512 * 16 \
        + 2 * 16 * 3
