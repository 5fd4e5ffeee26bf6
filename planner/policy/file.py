"""Policy files: which layers and channels to train, for which model, at what predicted cost.

Schema (format "ttplan-policy", version 1; every key required, no others allowed):

    format          "ttplan-policy"
    version         1
    model           {name: str, fingerprint: str}  fingerprint = LayerGraph.fingerprint() of
                                                   the traced model (batch size excluded)
    input_shape     [int, ...]   the shape planned for, batch first
    method          "tinytrain" | "none" | "fulltrain" | "lastlayer" | "tinytl" | "sparseupdate"
    convention      "paper" | "pytorch"   the memory convention the budgets bind
    cost_options    {optimizer, weight_bits, activation_bits, gradient_bits, weights_in_flash}
    budgets         {memory_bytes: int|null, compute_macs: int|null,
                     compute_fraction: float|null}  compute_macs is the resolved budget;
                                                    compute_fraction what the user gave, if any
    selection       {solver: str|null, channels: str|null, seed: int, evaluations: int,
                     greedy_fisher_captured: float|null, detail: str,
                     fisher: {num_samples: int, loss: str, seed: int} | null}
    layers          [{name: str, update_weight: bool, update_bias: bool, channel_axis: 0|1,
                      channels: [int, ...] sorted, distinct | null (all)}]  execution order
    predicted       {memory: {...}, totals: {...}  exactly profile(...).to_dict()'s "memory"
                     and "totals" for this policy with the same convention and cost_options,
                     fisher_captured: float|null, within_budget: bool,
                     device: {...} optional: time and energy on a device (devices.planning)}
    notes           [str]  what a reader should know (a baseline over budget, a rescaled scheme)
    inputs          [{name, dtype, shape}]  OPTIONAL, only for a model not called with one
                    float32 tensor of input_shape (costmodel.inputs); input_shape is then the
                    first input's

No timing is stored: the same inputs and seed give a byte-identical file (planner.jsonio).
`load_policy_updates(path, graph)` is what `costmodel.profile` calls for `update="x.json"`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttplan.costmodel.config import LayerUpdate, channel_count, updatable_layers
from ttplan.costmodel.errors import PolicyError, SpecError
from ttplan.costmodel.graph import LayerGraph
from ttplan.costmodel.inputs import ModelInputs, from_json, from_shape
from ttplan.costmodel.options import CostOptions, cost_options

from ..jsonio import check_header, check_keys, is_int, is_number, load_json, save_json

FORMAT = "ttplan-policy"
VERSION = 1
METHODS = ("tinytrain", "none", "fulltrain", "lastlayer", "tinytl", "sparseupdate")

_TOP = {"format", "version", "model", "input_shape", "method", "convention", "cost_options",
        "budgets", "selection", "layers", "predicted", "notes"}
_COST_OPTIONS = {"optimizer": str, "weight_bits": int, "activation_bits": int,
                 "gradient_bits": int, "weights_in_flash": bool}
_BUDGETS = {"memory_bytes", "compute_macs", "compute_fraction"}
_SELECTION = {"solver", "channels", "seed", "evaluations", "greedy_fisher_captured", "detail",
              "fisher"}
_LAYER = {"name", "update_weight", "update_bias", "channel_axis", "channels"}
_PREDICTED = {"memory", "totals", "fisher_captured", "within_budget"}


@dataclass
class Policy:
    """A plan. `to_dict()` is the file's content; `graph` (not saved) is the traced model."""

    model_name: str
    fingerprint: str
    input_shape: tuple[int, ...]
    method: str
    options: CostOptions  # how it was costed: the file's convention and cost_options
    budgets: dict
    selection: dict
    layers: list[dict]
    predicted: dict
    notes: list[str] = field(default_factory=list)
    graph: LayerGraph | None = field(default=None, repr=False, compare=False)
    inputs: list[dict] | None = None  # the input specs, when not the float-image shorthand

    def model_inputs(self) -> ModelInputs:
        """What the model is called with, as planned (zeros of each input's dtype)."""
        return from_json(self.inputs) if self.inputs is not None else from_shape(self.input_shape)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION,
            "model": {"name": self.model_name, "fingerprint": self.fingerprint},
            "input_shape": list(self.input_shape), "method": self.method,
            "convention": self.convention, "cost_options": dict(self.cost_options),
            "budgets": dict(self.budgets), "selection": dict(self.selection),
            "layers": [dict(layer) for layer in self.layers],
            "predicted": dict(self.predicted), "notes": list(self.notes),
            **({"inputs": [dict(s) for s in self.inputs]} if self.inputs is not None else {}),
        }

    def save(self, path) -> None:
        save_json(path, self.to_dict())

    def updates(self) -> dict[str, LayerUpdate]:
        return {layer["name"]: _layer_update(layer) for layer in self.layers}

    @property
    def convention(self) -> str:
        """The memory convention the budgets bind."""
        return self.options.convention

    @property
    def cost_options(self) -> dict:
        """The options the file records beside its convention."""
        return self.options.to_dict()

    @property
    def fisher_captured(self) -> float | None:
        return self.predicted.get("fisher_captured")

    @classmethod
    def from_dict(cls, d: Any, source: str = "policy") -> Policy:
        return _parse(d, source)


def layer_dicts(updates: dict[str, LayerUpdate], graph: LayerGraph) -> list[dict]:
    """The `layers` list of a policy, in execution order."""
    position = {name: i for i, name in enumerate(graph.order)}
    out = []
    for name in sorted(updates, key=lambda n: position.get(n, len(position))):
        u = updates[name]
        out.append({"name": name, "update_weight": bool(u.weight), "update_bias": bool(u.bias),
                    "channel_axis": int(u.channel_axis),
                    "channels": None if u.channels is None else sorted(int(c) for c in u.channels)})
    return out


def _layer_update(layer: dict) -> LayerUpdate:
    channels = layer["channels"]
    return LayerUpdate(weight=layer["update_weight"], bias=layer["update_bias"],
                       channels=None if channels is None else tuple(channels),
                       channel_axis=layer["channel_axis"])


# ------------------------------------------------------------------------------ loading

def load_policy(path) -> Policy:
    """Read a policy file and validate every field (one-line PolicyError when it is broken)."""
    return _parse(load_json(path, what="policy"), str(path))


def load_policy_updates(path, graph: LayerGraph) -> dict[str, LayerUpdate]:
    """{layer: LayerUpdate} of a policy file, checked against the traced model `graph`."""
    policy = load_policy(path)
    check_against_graph(policy, graph, str(path))
    return policy.updates()


def check_at_any_batch(policy: Policy, graph: LayerGraph, retrace, source: str = "policy") -> None:
    """`check_against_graph` for a graph traced at another batch size: when the fingerprints
    differ, against `retrace(planned batch)` instead (an RNN's state keeps the batch in
    dimension 1, which the fingerprint, batch = dimension 0, does not leave out)."""
    if graph.fingerprint() != policy.fingerprint and graph.input_shape[0] != policy.input_shape[0]:
        graph = retrace(policy.input_shape[0])
    check_against_graph(policy, graph, source)


def check_against_graph(policy: Policy, graph: LayerGraph, source: str = "policy") -> None:
    """Refuse a policy made for another model; check names and channel indices."""
    expected = graph.fingerprint()
    if policy.fingerprint != expected:
        raise PolicyError(f"{source} was planned for model {policy.model_name} (fingerprint "
                          f"{policy.fingerprint}), not for {graph.model_name} (fingerprint {expected})")
    layers = {n.name: n for n in updatable_layers(graph)}
    for layer in policy.layers:
        node = layers.get(layer["name"])
        if node is None:
            raise PolicyError(f"{source}: {layer['name']!r} is not an updatable layer of "
                              f"{graph.model_name}")
        if layer["channels"] is not None:
            size = channel_count(node, layer["channel_axis"])
            if layer["channels"][-1] >= size:
                raise PolicyError(f"{source}: layer {layer['name']!r} has {size} channels along "
                                  f"axis {layer['channel_axis']}, index {layer['channels'][-1]} "
                                  "is out of range")


def _parse(d: Any, source: str) -> Policy:
    def bad(problem: str) -> PolicyError:
        return PolicyError(f"{source} is not a valid policy: {problem}")

    check_header(d, source, FORMAT, VERSION, "policy")
    check_keys(d, _TOP | ({"inputs"} if isinstance(d, dict) and "inputs" in d else set()),
               "the policy", bad)
    inputs = d.get("inputs")
    if inputs is not None:
        try:
            if list(from_json(inputs, "'inputs'").shape) != d["input_shape"]:
                raise bad("'input_shape' must be the first input's shape")
        except SpecError as exc:
            raise bad(str(exc)) from None
    model = d["model"]
    check_keys(model, {"name", "fingerprint"}, "'model'", bad)
    if not all(isinstance(model[k], str) and model[k] for k in model):
        raise bad("'model' name and fingerprint must be non-empty strings")
    shape = d["input_shape"]
    if not (isinstance(shape, list) and len(shape) >= 2 and all(is_int(v) and v > 0 for v in shape)):
        raise bad("'input_shape' must be a list of at least 2 positive integers")
    if d["method"] not in METHODS:
        raise bad(f"'method' must be one of {', '.join(METHODS)}, not {d['method']!r}")
    if d["convention"] not in ("paper", "pytorch"):
        raise bad(f"'convention' must be paper or pytorch, not {d['convention']!r}")
    options = d["cost_options"]
    check_keys(options, set(_COST_OPTIONS), "'cost_options'", bad)
    for key, kind in _COST_OPTIONS.items():
        value = options[key]
        ok = isinstance(value, bool) if kind is bool else (is_int(value) if kind is int
                                                           else isinstance(value, str))
        if not ok:
            raise bad(f"cost_options.{key} must be a {kind.__name__}")
    try:
        costed = cost_options(d["convention"], **options)
    except SpecError as exc:
        raise bad(f"cost_options: {exc}") from None
    budgets = d["budgets"]
    check_keys(budgets, _BUDGETS, "'budgets'", bad)
    for key in ("memory_bytes", "compute_macs"):
        if budgets[key] is not None and not (is_int(budgets[key]) and budgets[key] > 0):
            raise bad(f"budgets.{key} must be a positive integer or null")
    fraction = budgets["compute_fraction"]
    if fraction is not None and not (is_number(fraction) and 0 < fraction <= 1):
        raise bad("budgets.compute_fraction must be a number in (0, 1] or null")
    _check_selection(d["selection"], bad)
    layers = _check_layers(d["layers"], bad)
    _check_predicted(d["predicted"], bad)
    notes = d["notes"]
    if not (isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
        raise bad("'notes' must be a list of strings")
    return Policy(model["name"], model["fingerprint"], tuple(shape), d["method"], costed,
                  dict(budgets), dict(d["selection"]), layers, dict(d["predicted"]),
                  list(notes), inputs=inputs)


def _check_selection(sel: Any, bad) -> None:
    check_keys(sel, _SELECTION, "'selection'", bad)
    for key in ("solver", "channels"):
        if sel[key] is not None and not isinstance(sel[key], str):
            raise bad(f"selection.{key} must be a string or null")
    if not is_int(sel["seed"]):
        raise bad("selection.seed must be an integer")
    if not (is_int(sel["evaluations"]) and sel["evaluations"] >= 0):
        raise bad("selection.evaluations must be a non-negative integer")
    if sel["greedy_fisher_captured"] is not None and not is_number(sel["greedy_fisher_captured"]):
        raise bad("selection.greedy_fisher_captured must be a number or null")
    if not isinstance(sel["detail"], str):
        raise bad("selection.detail must be a string")
    fisher = sel["fisher"]
    if fisher is not None:
        check_keys(fisher, {"num_samples", "loss", "seed"}, "selection.fisher", bad)
        if not (is_int(fisher["num_samples"]) and is_int(fisher["seed"])
                and isinstance(fisher["loss"], str)):
            raise bad("selection.fisher must hold integer num_samples and seed and a loss name")


def _check_layers(layers: Any, bad) -> list[dict]:
    if not isinstance(layers, list):
        raise bad("'layers' must be a list")
    seen = set()
    out = []
    for i, layer in enumerate(layers):
        check_keys(layer, _LAYER, f"layers[{i}]", bad)
        name = layer["name"]
        if not (isinstance(name, str) and name):
            raise bad(f"layers[{i}].name must be a non-empty string")
        if name in seen:
            raise bad(f"layer {name!r} is listed twice")
        seen.add(name)
        if not (isinstance(layer["update_weight"], bool) and isinstance(layer["update_bias"], bool)):
            raise bad(f"layer {name!r}: update_weight and update_bias must be true or false")
        if not (layer["update_weight"] or layer["update_bias"]):
            raise bad(f"layer {name!r} updates neither weight nor bias; leave it out")
        if layer["channel_axis"] not in (0, 1) or isinstance(layer["channel_axis"], bool):
            raise bad(f"layer {name!r}: channel_axis must be 0 (output) or 1 (input channels)")
        channels = layer["channels"]
        if channels is not None:
            if not layer["update_weight"]:
                raise bad(f"layer {name!r}: channels apply to weight updates; use null")
            if not (isinstance(channels, list) and channels and all(is_int(c) for c in channels)):
                raise bad(f"layer {name!r}: channels must be a non-empty list of integers or null")
            if len(set(channels)) != len(channels):
                raise bad(f"layer {name!r}: channel indices are duplicated")
            if channels != sorted(channels) or channels[0] < 0:
                raise bad(f"layer {name!r}: channel indices must be sorted and non-negative")
        out.append(dict(layer))
    return out


def _check_predicted(pred: Any, bad) -> None:
    # `device` (optional): time/energy on a device, added by device-aware planning (devices).
    check_keys(pred, _PREDICTED | ({"device"} & set(pred) if isinstance(pred, dict) else set()),
          "'predicted'", bad)
    if "device" in pred and not (isinstance(pred["device"], dict) and pred["device"]):
        raise bad("predicted.device must be a non-empty object")
    memory = pred["memory"]
    if not (isinstance(memory, dict) and memory and all(isinstance(k, str) and is_int(v)
                                                         for k, v in memory.items())):
        raise bad("predicted.memory must map names to integers (bytes)")
    if not (isinstance(pred["totals"], dict) and pred["totals"]):
        raise bad("predicted.totals must be a non-empty object")
    if pred["fisher_captured"] is not None and not is_number(pred["fisher_captured"]):
        raise bad("predicted.fisher_captured must be a number or null")
    if not isinstance(pred["within_budget"], bool):
        raise bad("predicted.within_budget must be true or false")


def policy_from_file_or_object(policy) -> Policy:
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, dict):
        return _parse(policy, "policy")
    if isinstance(policy, (str, Path)):
        return load_policy(policy)
    raise PolicyError(f"expected a Policy, a policy dict or a path, not {type(policy).__name__}")
