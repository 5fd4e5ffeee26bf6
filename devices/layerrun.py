"""Layer tables of a model and the per-layer device model fitted from several of them.

`layermeasure.measure_table(model, ...)` (what `ttplan measure --layer-table` writes) holds,
for one model:
  layers  every layer timed alone at each batch size (devices.layertable);
  runs    short whole training runs (`train`, in this process) of a few update specs at each
          batch size — what fits the overheads the layers alone do not show (the in-model
          factor, the per-step and per-tensor costs), with each run's work per (kind, pass);
  machine the load average before and after, the cores, threads and torch version.
`fit_layer_model(tables)` fits the per-kind constants from all layer rows, then the overheads
from all runs, and checks it leave-one-MODEL-out: each table's runs predicted by a fit of the
other tables only (layers and runs), as a model the calibration never saw would be.

File format "ttplan-layer-table", version 1 (JSON, written atomically).
"""

from __future__ import annotations

import math
import statistics

import torch

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.options import PYTORCH
from ttplan.costmodel.profile import EVAL_MODE, profile
from ttplan.costmodel.trace import trace
from ttplan.planner.fisher import default_candidate_layers
from ttplan.planner.jsonio import check_header, load_json, save_json

from . import layermodel as lm
from .layertable import (VIEW_COST_KINDS, FirstOutput, OperatorCell, SelfAttention,
                         measure_layers, stand_in)
from .owntable import anchors, own_table

FORMAT = "ttplan-layer-table"
VERSION = 1
TABLE_UPDATES = ("none", "bias-only", "last-blocks:2", "all")
SHORT_RUN_S = 0.5  # process CPU seconds below which a run or training phase is too short to time


def run_description(module, updates, shape, *, iterations: int, samples: int,
                    probes: bool = False, graph=None, fisher_layers: float | None = None) -> dict:
    """What a run executes, per (kind, pass) and per sample: its training step, the
    prototypes' forward, and (probes) the Fisher probe's step and the planner after it (a
    run that probes plans on the device: `plans`). `shape`: (batch, C, H, W)."""
    one = (1,) + tuple(shape[1:])
    g1 = graph if graph is not None and tuple(graph.input_shape) == one else \
        trace(module, one, getattr(graph, "model_name", None) or "model")
    ev = profile(None, one, update=updates, graph=g1, tracing=EVAL_MODE,
                 options=PYTORCH).evaluation
    passes = lm.layer_passes(ev)
    step = lm.work_of(passes)
    desc = {"batch_size": int(shape[0]), "iterations": int(iterations),
            "samples": int(samples), "updated_tensors": int(ev.updated_tensors),
            # what the optimiser updates each step, element by element (`update_element_s`)
            "updated_elements": int(sum(r["trainable_params"] for r in ev.rows)),
            "optimizer": "sgd",  # the runner's default; `planning.layer_run` sets another
            "input_elements": int(math.prod(shape[1:])),
            "step_work": step, "forward_work": {k: v for k, v in step.items()
                                                if k.endswith("/forward")},
            "probe_work": None, "plans": bool(probes),
            "sample_shape": [int(s) for s in shape[1:]], "layer_passes": passes,
            "stand_ins": stand_ins(g1)}
    if probes:
        args = () if fisher_layers is None else (fisher_layers,)
        desc["probe_work"] = lm.probe_work(g1, set(default_candidate_layers(module, *args)))
    return desc


def stand_ins(graph) -> dict[str, int]:
    """{STAND_INS key: layers} of the graph's layers that no table times."""
    out: dict[str, int] = {}
    for node in graph.ops():
        key = stand_in(node)
        if key is not None:
            out[key] = out.get(key, 0) + 1
    return out


class _Attention(torch.nn.Module):
    """(B, heads x tokens x 3 x dim) -> scaled_dot_product_attention of its q, k, v."""

    def __init__(self, heads: int, tokens: int, dim: int):
        super().__init__()
        self.shape = (heads, tokens, dim)

    def forward(self, x):
        h, n, d = self.shape
        q, k, v = x.reshape(x.shape[0], 3, h, n, d).unbind(1)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def kind_sweep() -> list[tuple[str, torch.nn.Module, tuple[int, ...]]]:
    """Generic layers of the kinds a MobileNet-like zoo does not have (dense k x k
    convolutions, some with a bias, 1-D and transposed convolutions, max and average pools,
    linear layers, attention products and nn.MultiheadAttention, LayerNorm, GELU, SiLU,
    sigmoid, tanh, PReLU, LSTM, GRU and RNN layers and LSTM and GRU cells), at a fixed grid
    of shapes chosen as common sizes, not from any model: (label, module, per-sample input
    shape)."""
    nn = torch.nn
    out = []
    for cin, cout, hw, stride, bias in ((8, 16, 56, 1, False), (16, 32, 56, 2, True),
                                        (32, 32, 28, 1, False), (32, 64, 28, 2, False),
                                        (64, 64, 14, 1, True), (64, 128, 14, 2, False),
                                        (128, 128, 7, 1, False), (24, 48, 28, 1, True),
                                        (16, 16, 32, 1, False), (96, 96, 7, 1, True),
                                        (48, 96, 14, 2, False), (8, 8, 32, 1, False),
                                        (16, 16, 16, 1, False), (24, 24, 16, 1, False),
                                        (24, 48, 16, 2, False), (32, 32, 8, 1, False),
                                        (48, 48, 8, 1, False), (64, 64, 8, 1, False),
                                        (96, 96, 4, 1, False)):
        # four with a bias: a conv's bias gradient (the zoo's convs have none); at batch 1
        # fifteen run PyTorch's native path (input of at most 20,480 elements), four oneDNN;
        # the last eight are a small ResNet's (0.6-2.4 M MACs a sample): without them the
        # native path's fixed cost, fitted on larger convs, priced such a net's batch-1 runs
        # 12-30 % high (notes §25)
        out.append((f"conv3x3 {cin}-{cout} {hw} s{stride}{' bias' if bias else ''}",
                    nn.Conv2d(cin, cout, 3, stride, 1, bias=bias), (cin, hw, hw)))
    # 1-D convs as audio and sequence models use them: a raw waveform's strided first layer,
    # then feature maps of a few hundred steps down to tens; the last three small (19-128 k
    # MACs, a keyword spotter's on MFCC frames): with only the first six (0.6-4 M MACs) the
    # native path's fixed cost was fitted 0 and such layers priced 64-72 % low (notes §28)
    for cin, cout, k, length, stride in ((1, 32, 80, 4000, 4), (16, 32, 3, 400, 1),
                                         (40, 64, 3, 98, 1), (32, 64, 5, 200, 2),
                                         (64, 64, 3, 100, 1), (128, 128, 5, 50, 1),
                                         (8, 16, 3, 50, 1), (32, 32, 3, 25, 1),
                                         (16, 32, 5, 100, 2)):
        out.append((f"conv1d {cin}-{cout} k{k} {length} s{stride}",
                    nn.Conv1d(cin, cout, k, stride, k // 2), (cin, length)))
    # biased 1 x 1 and depthwise convs (squeeze-excite on a 1 x 1 map, projections): the 1 x 1
    # path's bias gradient is a sum, oneDNN's (depthwise) runs the weights' gradient too
    for cin, cout, hw in ((72, 18, 1), (18, 72, 1), (32, 64, 28), (96, 24, 7)):
        out.append((f"conv1x1 {cin}-{cout} {hw} bias", nn.Conv2d(cin, cout, 1), (cin, hw, hw)))
    for channels, k, hw in ((32, 3, 28), (96, 3, 14), (72, 5, 20), (120, 5, 10)):
        out.append((f"dw{k}x{k} {channels} {hw} bias",
                    nn.Conv2d(channels, channels, k, 1, k // 2, groups=channels),
                    (channels, hw, hw)))
    # dilated convs, 2-D and 1-D (TCNs, WaveNet-like audio): at batch 1 on PyTorch's dilated
    # path (inputs of at most 20,480), oneDNN beyond
    for cin, cout, hw, dilation, bias in ((16, 16, 32, 2, False), (32, 32, 24, 2, True),
                                          (32, 32, 14, 4, False), (64, 64, 12, 2, False)):
        out.append((f"conv3x3 {cin}-{cout} {hw} d{dilation}{' bias' if bias else ''}",
                    nn.Conv2d(cin, cout, 3, 1, dilation, dilation, bias=bias), (cin, hw, hw)))
    for cin, cout, length, dilation, bias in ((64, 64, 200, 2, True), (32, 32, 400, 4, False),
                                              (128, 128, 100, 2, False), (16, 32, 800, 8, False)):
        out.append((f"conv1d {cin}-{cout} k3 {length} d{dilation}{' bias' if bias else ''}",
                    nn.Conv1d(cin, cout, 3, 1, dilation, dilation, bias=bias), (cin, length)))
    # at batch 1 all but the last on PyTorch's native path (an input of at most 20,480)
    for cin, cout, k, stride, hw in ((32, 16, 2, 2, 14), (64, 32, 4, 2, 7), (16, 8, 3, 1, 28),
                                     (128, 64, 2, 2, 7), (24, 12, 2, 2, 20), (32, 16, 2, 2, 28)):
        out.append((f"convT {cin}-{cout} k{k} s{stride} {hw}",
                    nn.ConvTranspose2d(cin, cout, k, stride, (k - stride + 1) // 2),
                    (cin, hw, hw)))
    for label, pool, shape in (("maxpool3x3 s2", nn.MaxPool2d(3, 2, 1), (32, 56, 56)),
                               ("maxpool3x3 s2", nn.MaxPool2d(3, 2, 1), (64, 28, 28)),
                               ("maxpool2", nn.MaxPool2d(2), (32, 32, 32)),
                               ("maxpool2", nn.MaxPool2d(2), (64, 16, 16)),
                               ("avgpool2", nn.AvgPool2d(2), (64, 16, 16)),
                               ("avgpool2", nn.AvgPool2d(2), (32, 28, 28)),
                               ("avgpool3 s1", nn.AvgPool2d(3, 1, 1), (16, 32, 32)),
                               ("avgpool1d2", nn.AvgPool1d(2), (64, 200))):
        out.append((f"{label} {'x'.join(map(str, shape))}", pool, shape))
    for heads, tokens, dim in ((2, 64, 32), (4, 64, 64), (8, 16, 128), (4, 196, 32)):
        out.append((f"mha {heads}x{tokens}x{dim}",
                    SelfAttention(nn.MultiheadAttention(dim, heads, batch_first=True)),
                    (tokens, dim)))
    for tokens, fin, fout in ((64, 64, 192), (64, 128, 128), (196, 64, 64), (49, 256, 512),
                              (16, 512, 128), (196, 128, 256), (1, 256, 10)):
        out.append((f"linear {tokens}x{fin}-{fout}", nn.Linear(fin, fout), (tokens, fin)))
        out.append((f"layernorm {tokens}x{fin}", nn.LayerNorm(fin), (tokens, fin)))
        out.append((f"gelu {tokens}x{fout}", nn.GELU(), (tokens, fout)))
    # activations far from an add's cost per element (layertable.ACTIVATION_KINDS), at a
    # conv's map and a transformer's tokens; PReLU per channel and with one slope
    for label, act in (("silu", nn.SiLU()), ("sigmoid", nn.Sigmoid()), ("tanh", nn.Tanh()),
                       ("elu", nn.ELU()), ("mish", nn.Mish()), ("softplus", nn.Softplus())):
        for shape in ((32, 28, 28), (64, 14, 14), (196, 128)):
            out.append((f"{label} {'x'.join(map(str, shape))}", act, shape))
    for shape in ((32, 28, 28), (64, 14, 14), (16, 56, 56)):  # without parameters: a leaf
        out.append((f"instance_norm {'x'.join(map(str, shape))}", nn.InstanceNorm2d(shape[0]),
                    shape))
    # the elementwise family's several-kernel operators (layertable.OPERATOR_KINDS): softmax
    # over attention maps and logits; RMSNorm over tokens (without its weight: a leaf; with
    # one a model runs F.rms_norm, the same kernels and one more product); upsampling x2
    for shape in ((4, 64, 64), (3, 145, 145), (8, 16, 16), (196, 10)):
        out.append((f"softmax {'x'.join(map(str, shape))}", nn.Softmax(dim=-1), shape))
    for shape in ((64, 64), (196, 128), (16, 256), (24, 48)):
        out.append((f"rms_norm {'x'.join(map(str, shape))}",
                    nn.RMSNorm(shape[-1], elementwise_affine=False), shape))
    for mode in ("nearest", "bilinear"):
        for shape in ((32, 28, 28), (64, 14, 14), (16, 56, 56)):
            out.append((f"upsample_{mode} {'x'.join(map(str, shape))}",
                        nn.Upsample(scale_factor=2, mode=mode), shape))
    out += function_cells()
    for channels, shape in ((32, (32, 28, 28)), (64, (64, 14, 14)), (1, (16, 56, 56))):
        out.append((f"prelu{channels} {'x'.join(map(str, shape))}", nn.PReLU(channels), shape))
    for heads, tokens, dim in ((2, 64, 32), (4, 196, 32), (4, 49, 64), (8, 16, 16)):
        out.append((f"attention {heads}x{tokens}x{dim}", _Attention(heads, tokens, dim),
                    (3 * heads * tokens * dim,)))
    for cell, fin, hidden in ((nn.LSTMCell, 20, 32), (nn.LSTMCell, 64, 64),
                              (nn.LSTMCell, 128, 128), (nn.GRUCell, 20, 32),
                              (nn.GRUCell, 64, 64), (nn.GRUCell, 128, 128)):
        # one time step from a zero state, as a Python loop's first call makes it
        layer = cell(fin, hidden)  # an LSTMCell returns (h, c), a GRUCell h
        out.append((f"{cell.__name__.lower()} {fin}-{hidden}",
                    FirstOutput(layer) if cell is nn.LSTMCell else layer, (fin,)))
    shapes = ((8, 16, 32, 1), (16, 32, 32, 1), (32, 32, 64, 1), (16, 64, 64, 1),
              (50, 40, 64, 1), (8, 128, 128, 1), (16, 32, 32, 2), (24, 64, 96, 2))
    for cell, grid in ((nn.LSTM, shapes), (nn.GRU, shapes), (nn.RNN, shapes[1:6:2])):
        # two stacked: each layer's steps, the next layer's input; a plain RNN at three shapes
        for steps, fin, hidden, layers in grid:
            stacked = f" x{layers}" if layers > 1 else ""
            out.append((f"{cell.__name__.lower()} {steps}x{fin}-{hidden}{stacked}",
                        FirstOutput(cell(fin, hidden, num_layers=layers, batch_first=True)),
                        (steps, fin)))
    return out


def function_cells() -> list[tuple[str, torch.nn.Module, tuple[int, ...]]]:
    """The sweep's cells of the functions a model calls that are kinds of their own
    (layertable.FUNCTION_KINDS): each over a conv's map (along its channels) and over tokens
    (along their features), where a model calls it."""
    F = torch.nn.functional
    dim = lambda x: 1 if x.dim() == 4 else -1  # noqa: E731
    functions = (
        ("var", lambda x: x.var(dim(x), keepdim=True), None),
        ("normalize", lambda x: F.normalize(x, dim=dim(x)), None),
        ("where", lambda x: torch.where(x > 0, x, 0.1 * x),
         lambda c, a, b: torch.where(c > 0, a, b)),
        ("masked_fill", lambda x: x.masked_fill(x > 1, 0.0),
         lambda x, m: x.masked_fill(m > 1, 0.0)),
        ("exp", torch.exp, None),
        ("glu", lambda x: F.glu(x, dim(x)), None),
        ("clamp", lambda x: x.clamp(-1.0, 1.0), None))
    out = []
    for op, fn, alone in functions:
        for shape in ((32, 28, 28), (64, 14, 14), (196, 128), (4, 64, 64)):
            out.append((f"{op} {'x'.join(map(str, shape))}", OperatorCell(op, fn, alone), shape))
    return out


def measure_sweep(batch_sizes, repeats: int = 5) -> list[dict]:
    """Layer rows of `kind_sweep()` at each batch size (model "kind-sweep")."""
    rows = []
    for label, layer, sample_shape in kind_sweep():
        module = torch.nn.Sequential(layer).eval()  # the layer a submodule, as in a model
        for b in batch_sizes:
            shape = (b,) + tuple(sample_shape)
            graph = trace(module, shape, label)
            full = {r["name"]: r for r in profile(None, shape, update="all", graph=graph,
                                                    tracing=EVAL_MODE,
                                                    options=PYTORCH
                                                    ).evaluation.rows}
            rows += [dict(r, model="kind-sweep", layer=f"{label}/{r['layer']}")
                     for r in measure_layers(module, graph, full, repeats=repeats)
                     if r["kind"] not in VIEW_COST_KINDS]
    return rows


def save_table(path, table: dict) -> None:
    save_json(path, table)


def load_table(path) -> dict:
    d = load_json(path, what="layer table")
    check_header(d, str(path), FORMAT, VERSION, "layer table")
    for key in ("model", "layers", "runs"):
        if key not in d:
            raise SpecError(f"{path} is not a valid layer table: no {key!r}")
    return d


# ------------------------------------------------------------------------------ fitting

PHASE_MISMATCH = 0.15  # a table's layer phase and run phase at speeds further apart: noted


def phase_mismatch(layer_reference_s, run_reference_s) -> float | None:
    """How much longer (+) or shorter (-) the speed reference took in the runs than at the
    layer timings, as a fraction; None when either was not recorded."""
    if not layer_reference_s or not run_reference_s:
        return None
    return run_reference_s / layer_reference_s - 1.0


def measured_op_s(tables: list[dict]) -> float | None:
    """What a forward operator pays inside a model beyond itself timed alone, per call: 0 when
    the tables measured their forwards' excess (`forward_overhead`), which follows the
    elements (`measured_forward_element_s`); None when no table measured it (tables written
    before: op_s is then fitted from the runs).

    A zoo model's whole forward against its layers called once each, in order, on inputs of
    their shapes, interleaved: within 0.6 us per operator at batch 1 (-0.3 to +0.6 us, three
    models, two rounds) -- the containers' Python costs next to nothing. The excess over the
    layers timed alone (each many times on the same warm input) is the sequence's: every
    layer reads what it did not just touch, 0.05-0.23 ns per forward element at batch 1 and
    0.10-0.15 at batch 4. Priced per operator it was 1-5 us per operator at batch 1 and 8-11 at
    batch 4, and the median over both, 12 us, gave a model of many small operators three
    times what it pays (notes/device_time_model.md §22)."""
    return 0.0 if any(_excess_rows(t) for t in tables) else None


def measured_forward_element_s(tables: list[dict]) -> float | None:
    """What a forward pass pays inside a model per element beyond its layers timed alone: per
    table, its whole forwards' excess over its layers' sum (`forward_overhead`), summed over
    its batch sizes, per forward element of those layers; the median over the tables, at
    least 0 (`measured_op_s` says why). None when no table measured it."""
    per_table = []
    for t in tables:
        rows = _excess_rows(t)
        elements = sum(_forward_elements(t, o["batch_size"]) for o in rows)
        if rows and elements > 0:
            excess = sum(o["forward_cpu_s"] - o["layers_forward_cpu_s"] for o in rows)
            per_table.append(excess / elements)
    return max(0.0, statistics.median(per_table)) if per_table else None


def measured_first_call_s(tables: list[dict]) -> float | None:
    """What a run's first training steps pay beyond warm ones, per operator call of a step:
    per table run that trains, the runner's `first_steps_excess_cpu_s` (its first two
    steps against its warm step, devices.trainloop.first_steps_excess) over the step's
    operator calls; the median over the runs. None when no run measured it (tables written
    before: first_call_s is then fitted from the runs).

    Measured in the runner, a zoo model's first steps pay 10-15 ms (0.03-0.04 ms per call);
    fitted from the runs' totals the term came out 0.18-0.40 ms per call: it took up what the
    layers' prices missed at batch 4, and a small transformer's 60 ms run was predicted a
    third too long (notes/device_time_model.md §23)."""
    per_call = [r["measured"]["first_steps_excess_cpu_s"] / lm.calls(r["step_work"])
                for t in tables for r in t.get("runs") or ()
                if r.get("updated_tensors") and lm.calls(r.get("step_work") or {}) > 0
                and r["measured"].get("first_steps_excess_cpu_s") is not None]
    return statistics.median(per_call) if per_call else None


def _excess_rows(table: dict) -> list[dict]:
    return [o for o in table.get("forward_overhead") or () if o.get("operators")]


def _forward_elements(table: dict, batch: int) -> float:
    """The elements of the forward passes the table timed of its model at `batch`."""
    return float(sum(r["elements"] for r in table.get("layers") or ()
                     if r["model"] == table.get("model") and r["pass"] == "forward"
                     and r["batch_size"] == batch))


def measured_view_backward(tables: list[dict]) -> dict | None:
    """The view kind's backward pass as a kind entry: what one node of a backward costs inside
    it (devices.stepreference.grad_call_seconds' slope), the median over the tables; None
    when no table measured it (tables written before: a view's backward is priced as an
    elementwise pass's call, as it was). A view moves no data: its backward is the node
    alone, 2.0-4.1 us on this VM, where an elementwise pass timed alone pays its autograd.grad
    call, 9.5-20 us (notes/device_time_model.md §26)."""
    seen = [t["step_reference"]["grad_node_cpu_s"] for t in tables
            if (t.get("step_reference") or {}).get("grad_node_cpu_s") is not None]
    if not seen:
        return None
    return {"mac_s": 0.0, "element_s": 0.0, "weight_s": 0.0,
            "call_s": statistics.median(seen), "rows": 0, "identified": True,
            "why": "measured: one node of a backward (the tables' step reference)"}


def measured_step_terms(tables: list[dict], op_s: float | None) -> dict:
    """{step_s, tensor_update_s, loop_s, iteration_s} from the tables' `step_reference`
    (devices.stepreference), the medians over the tables, each at least 0:
    per iteration, the difference of the reference's two run lengths; at two sample counts it
    splits into what each step pays and what each iteration pays (`iteration_s`: the
    prototypes' means, the shuffle); its `none` runs' step beyond their two forwards is what
    every step pays (`loop_s`: the loss, the loop's bookkeeping); a training step's remainder
    beyond its layers timed alone, its forward operators' op_s, its tensors' updates and the
    loop is `step_s`. Records written before the sample counts or the `none` runs leave those
    terms out (0: their cost stays in step_s, as it was). Empty when no table measured it
    (tables written before: step_s and tensor_update_s are then fitted from the runs)."""
    found: dict[str, list[float]] = {"step_s": [], "tensor_update_s": [], "loop_s": [],
                                     "iteration_s": []}
    for t in tables:
        ref = t.get("step_reference")
        if not ref:
            continue
        short, long = ref["iterations"]

        def per_iteration(key: str, lengths=(short, long)) -> float:
            short_s, long_s = ref[key]
            return (long_s - short_s) / (lengths[1] - lengths[0])

        samples, overhead = ref["samples"], 2 * ref["forward_operators"] * (op_s or 0.0)
        per_step, iteration = per_iteration("train_cpu_s") / samples, 0.0
        few = ref.get("few_samples")
        if ref.get("few_train_cpu_s") and few and few != samples:
            few_lengths = ref.get("few_iterations") or (short, long)
            per_step = (per_iteration("train_cpu_s")
                        - per_iteration("few_train_cpu_s", few_lengths)) / (samples - few)
            iteration = max(0.0, per_iteration("train_cpu_s") - samples * per_step)
            found["iteration_s"].append(iteration)
        loop = 0.0
        if ref.get("none_train_cpu_s") and "layers_forward_cpu_s" in ref:
            no_backward = (per_iteration("none_train_cpu_s") - iteration) / samples
            loop = max(0.0, no_backward - 2 * ref["layers_forward_cpu_s"] - overhead)
            found["loop_s"].append(loop)
        found["step_s"].append(max(0.0, per_step - ref["layers_step_cpu_s"] - overhead - loop
                                   - ref["tensors"] * ref["update_cpu_s"]))
        found["tensor_update_s"].append(ref["update_cpu_s"])
    return {term: statistics.median(seen) for term, seen in found.items() if seen}


def measured_optimizer_rates(tables: list[dict],
                             record: str = "update_element_cpu_s") -> dict[str, float] | None:
    """{optimiser: seconds} of one of the step references' optimiser records
    (`layermodel.OPTIMIZER_TERMS`: per updated element, per tensor or per step beyond SGD's;
    `stepreference.update_element_seconds`): the median over the tables. None when no table
    measured it (tables written before: an update then costs SGD's fixed cost per tensor
    only, whatever its size and optimiser)."""
    seen = [t["step_reference"][record] for t in tables
            if (t.get("step_reference") or {}).get(record)]
    if not seen:
        return None
    return {name: statistics.median(s[name] for s in seen if name in s) for name in seen[0]}


def measured_augment_element_s(tables: list[dict]) -> float | None:
    """The runner's augmentation of image samples per input element, measured in the tables
    (`augment`: one iteration's augmentation of the table's samples at its input shape): the
    median over the tables. None when no table measured it (tables written before, or of
    models whose input is not an image: fitted from the runs then)."""
    seen = [a["cpu_s"] / (a["samples"] * a["elements"]) for t in tables
            for a in [t.get("augment")] if a and a.get("samples") and a.get("elements")]
    return statistics.median(seen) if seen else None


# (smaller, larger): the larger configuration runs all the smaller one does, and more
CONTAINED = (("none", "bias-only"), ("none", "last-blocks:2"), ("none", "all"),
             ("last-blocks:2", "all"), ("bias-only", "all"))
OUT_OF_ORDER = 0.05  # the larger measured faster by more than this share: noted


def out_of_order(runs: list[dict]) -> list[str]:
    """Notes on a table's runs where a configuration measured faster than one it contains, at
    the same batch size and length: the machine's speed moved during the runs (the table's
    runs then mislead the overheads and the own-table anchors)."""
    seen = {(r["update"], r["batch_size"], r["iterations"]): r["measured"]["train_cpu_s"]
            for r in runs if r["measured"].get("train_cpu_s")}
    notes = []
    for (update, batch, iterations), seconds in sorted(seen.items()):
        for small, large in CONTAINED:
            if update == small and (large, batch, iterations) in seen and \
                    seen[(large, batch, iterations)] < (1 - OUT_OF_ORDER) * seconds:
                faster = 1 - seen[(large, batch, iterations)] / seconds
                notes.append(f"{large} at batch {batch} ({iterations} iterations) measured "
                             f"{100 * faster:.0f} % faster than {small}, which it contains: the "
                             "machine's speed moved during the table's runs; measure it again")
    return notes


def timing_resolution(runs: list[dict]) -> float | None:
    """Half the median spread ((max - min) / median) of the whole runs' repeated train times:
    how far apart two runs of one configuration land on this device, so the share within which
    a budget in measured seconds cannot tell a prediction over it from one under it. None
    when no run was repeated."""
    spreads = [r["measured"]["train_cpu_spread"] for r in runs
               if len(r["measured"].get("train_cpu_s_repeats") or ()) >= 2]
    return statistics.median(spreads) / 2 if spreads else None


def fit_layer_model(tables: list[dict]) -> dict:
    """{kinds, glue, phases, notes, loo} from the tables of one device."""
    if not tables:
        raise SpecError("a per-layer calibration needs at least one layer table")
    model = _fit(tables)
    rows = []
    names = [t["model"] for t in tables]
    if len(set(names)) >= 2:
        for i, t in enumerate(tables):
            others = [o for j, o in enumerate(tables) if o["model"] != t["model"]]
            fit = _fit(others)
            for r in t["runs"]:
                predicted = lm.predict_phases(r, fit)["train_s"]
                measured = r["measured"]["train_cpu_s"]
                rows.append({"model": r["model"], "update": r["update"],
                             "batch_size": r["batch_size"], "measured_train_s": measured,
                             "predicted_train_s": predicted,
                             "error_pct": 100 * (predicted - measured) / measured})
    errors = [abs(r["error_pct"]) for r in rows]
    model["loo"] = {"by": "leave-one-model-out", "rows": rows,
                    "median_abs_pct": statistics.median(errors) if errors else None,
                    "max_abs_pct": max(errors) if errors else None}
    return model


def sweep_rows(tables: list[dict]) -> list[dict]:
    """The kind sweep's rows, each the median over the tables that timed it: every table
    times the same sweep at its own moment, and which of them came first must not decide
    the calibration (one table's sweep, timed while the machine was slow, priced every kind
    off; notes/device_time_model.md §24)."""
    timed: dict[tuple, list[dict]] = {}
    for t in tables:
        for r in t["layers"]:
            if r["model"] == "kind-sweep":
                key = (r["layer"], r["kind"], r["pass"], r["batch_size"], r["macs"],
                       r["elements"])
                timed.setdefault(key, []).append(r)
    return [dict(rows[0], cpu_s=statistics.median(r["cpu_s"] for r in rows),
                 wall_s=statistics.median(r["wall_s"] for r in rows))
            for _, rows in sorted(timed.items(), key=lambda kv: kv[0])]


def _fit(tables: list[dict]) -> dict:
    layers = [r for t in tables for r in t["layers"] if r["model"] != "kind-sweep"]
    layers += sweep_rows(tables)
    runs = [r for t in tables for r in t["runs"]]
    kinds = lm.fit_kinds(layers)
    view_backward = measured_view_backward(tables)
    if view_backward:  # no layer row times a view (measure_sweep leaves them out)
        kinds["view/input_grad"] = view_backward
    # op_s as the tables measure it directly (a model's whole forward against its layers
    # alone) is fixed, not fitted: the zoo's operator counts differ by 1.5x only, so a fit
    # cannot tell op_s from step_s and gave a small model the big models' overhead (notes §14)
    # The augmentation is measured too: at batch 1 its column (samples x iterations) is the
    # steps', so a fit shared the per-step costs out between them as the runs' noise fell
    # (1.15 ms per 96 x 96 sample against 0.13 ms timed, step_s 0; notes §19).
    measured = {k: v for k, v in (("op_s", measured_op_s(tables)),
                                  ("augment_element_s", measured_augment_element_s(tables)),
                                  ("forward_element_s", measured_forward_element_s(tables)),
                                  ("first_call_s", measured_first_call_s(tables)))
                if v is not None}
    op_s = measured.get("op_s")
    # The runner's own cost per step and per updated tensor, measured on a model of next to
    # no layers: the zoo's runs cannot tell them from their layers' per-call costs and a fit
    # gave both 0 s, most of a step of a small model (notes §21).
    step_terms = measured_step_terms(tables, op_s)
    measured.update(step_terms)
    rates = {term: measured_optimizer_rates(tables, record)
             for term, record in lm.OPTIMIZER_TERMS.items()}
    measured.update({term: r for term, r in rates.items() if r})
    glue = lm.fit_glue(runs, kinds, measured=measured or None)
    undetermined = glue.pop("undetermined", [])  # the glue stays numbers; the notes say it
    notes = [f"{k}: {v['why']}; {lm.priced_as(lm.priced_by(kinds, *k.split('/')))}"
             for k, v in kinds.items() if not v["identified"] and v["why"]]
    if not glue["identified"]:
        notes.append(f"overheads not fitted: {len(runs)} run(s) for {lm.FITTED_TERMS} terms")
    if "forward_element_s" in measured:
        notes.append(f"forward_element_s measured in the tables (a model's whole forward "
                     f"against its layers alone): "
                     f"{1e9 * measured['forward_element_s']:.3f} ns per forward element, used "
                     "as measured (not fitted); op_s 0 (the containers' Python: next to "
                     "nothing, notes §22)")
    if step_terms:
        notes.append(f"step_s and tensor_update_s measured in the tables (a one-Linear model's "
                     f"training step beyond its layer, the optimiser on a small tensor): "
                     f"{1e6 * step_terms['step_s']:.1f} us per step, "
                     f"{1e6 * step_terms['tensor_update_s']:.2f} us per updated tensor, used "
                     "as measured (not fitted)"
                     + (f"; beside them every step's loop (loss, bookkeeping, with or without a "
                        f"backward) {1e6 * step_terms['loop_s']:.1f} us and every iteration's "
                        f"{1e6 * step_terms.get('iteration_s', 0.0):.1f} us"
                        if "loop_s" in step_terms else ""))
    if any(rates.values()):
        notes.append("the optimiser measured in the tables (steps over small and large "
                     "tensors), not fitted: " + "; ".join(
                         f"{term} " + ", ".join(f"{name} {v:.3g}" for name, v in r.items())
                         for term, r in rates.items() if r))
    if view_backward:
        notes.append(f"view/input_grad measured in the tables: one node of a backward, "
                     f"{1e6 * view_backward['call_s']:.2f} us per view (a view moves no data; "
                     "an elementwise pass timed alone pays its own autograd.grad call)")
    if "first_call_s" in measured:
        notes.append(f"first_call_s measured in the tables' runs (their first two steps beyond "
                     f"warm ones): {1e6 * measured['first_call_s']:.1f} us per operator call of "
                     "a step, once per run, used as measured (not fitted)")
    if "augment_element_s" in measured:
        notes.append(f"augment_element_s measured in the tables (the runner's augmentation of "
                     f"their image samples): {1e9 * measured['augment_element_s']:.2f} ns per "
                     "input element, used as measured (not fitted)")
    if glue["identified"] and undetermined:
        notes.append(f"overheads {', '.join(undetermined)}: the runs cannot tell them "
                     "from the other terms (e.g. op_s from step_s when every model runs as many "
                     "operators); fixed at 0")
    workloads = {(r["iterations"], r["samples"]) for r in runs}
    if glue["identified"] and len({i * s for i, s in workloads}) == 1:
        (iterations, samples), *_ = sorted(workloads)
        notes.append(f"first_call_s (once per run) and the per-step terms: every table run has "
                     f"{iterations} iteration(s) of {samples} samples, so only the batch sizes "
                     "tell them apart (augment_element_s left out); runs of other lengths extrapolate "
                     "(tables measured now add runs of a second length)")
    phases_apart = {}  # {model: mismatch} of the tables whose two phases saw other speeds
    for t in tables:
        machine = t.get("machine", {})
        mismatch = phase_mismatch(machine.get("layer_reference_s"), machine.get("run_reference_s"))
        if mismatch is not None and abs(mismatch) > PHASE_MISMATCH:
            phases_apart[t["model"]] = mismatch
            notes.append(f"{t['model']}: the speed reference took {100 * mismatch:+.0f} % in the "
                         "table's runs against its layer timings (the machine's speed moved "
                         "between them): the overheads absorb it, its own model is priced from "
                         "its layers without its runs' factor; measure the table again")
    notes += [f"{t['model']}: {n}" for t in tables for n in out_of_order(t["runs"])]
    with_energy = [r for r in runs if r["measured"].get("energy_j")]
    power_w = (sum(r["measured"]["energy_j"] for r in with_energy)
               / sum(sum(r["measured"][f"{p}_cpu_s"] for p in ("load", "fisher", "plan", "train"))
                     for r in with_energy)) if with_energy else None
    references = [t.get("machine", {}).get("reference_s") for t in tables]
    references = [r for r in references if r]
    model = {"kinds": kinds, "glue": glue, "phases": lm.phase_constants(runs),
             "power_w": power_w,
             "reference_s": statistics.median(references) if references else None,
             "timing_resolution": timing_resolution(runs),
             "models": sorted({t["model"] for t in tables}), "notes": notes, "own_tables": []}
    # a model whose table this is is priced from it (devices.owntable), anchored on the
    # table's own whole runs (their factor measured / predicted by the fit above) unless they
    # ran at another speed of the machine than its layers were timed at: the factor would then
    # carry the machine's speed, not the model's (a table whose runs' speed reference took
    # +18 % put mcunet-5fps's last-blocks:2 at 1.60x its layers' price, +47 % of what it ran
    # minutes later, against -7.7 % unanchored; notes/device_time_model.md §22)
    for t in sorted(tables, key=lambda t: t["model"]):
        if t.get("input_shape") and t.get("batch_sizes"):
            entry = own_table(t)
            entry["anchors"] = anchors(t["runs"], entry,
                                       lambda r: lm.own_train_seconds(r, entry, model)[:2])
            if t["model"] in phases_apart:
                entry["anchored"] = False
            model["own_tables"].append(entry)
    return model


def round_model(model: dict) -> dict:
    """6 significant digits everywhere (a calibration regenerates byte-identically)."""
    def r(x):
        if isinstance(x, float):
            return float(f"{x:.6g}") + 0.0
        if isinstance(x, dict):
            return {k: r(v) for k, v in x.items()}
        if isinstance(x, list):
            return [r(v) for v in x]
        return x
    return r(model)


__all__ = ["fit_layer_model", "run_description", "load_table", "save_table",
           "kind_sweep", "measure_sweep"]
