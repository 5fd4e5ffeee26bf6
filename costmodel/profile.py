"""`profile`: the cost of one training configuration of one model, for people and scripts.

The JSON form (`Profile.to_dict`) is a documented contract (docs/contracts.md, "Profile JSON"):
model, input_shape, batch_size, convention, update, tracer, fingerprint, optimizer, bits,
weights_in_flash, layers (one object per operator), totals, memory (integers, bytes),
warnings. Per-layer numbers are for the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch.nn as nn

from .config import LayerUpdate, TrainConfig, resolve_updates, validate_updates
from .costs import Evaluation, evaluate
from .errors import SpecError, moved_keywords
from .graph import LayerGraph
from .inputs import resolve_inputs
from .options import CostOptions, options_or_default
from .specs import DEFAULT_INPUT_SHAPE, UpdateSpec, parse_update
from .trace import trace
from .zoo import load_model

if TYPE_CHECKING:  # pandas is imported by `table` only: a profile does not need it
    import pandas as pd

LAYER_FIELDS = ("name", "kind", "op", "block", "output_shape", "params", "trainable",
                "trainable_params", "forward_macs", "backward_input_macs",
                "backward_weight_macs", "backward_macs", "forward_other_ops",
                "backward_other_ops", "input_bytes", "output_bytes")


@dataclass
class Profile:
    model_name: str
    graph: LayerGraph  # as traced (BatchNorm not folded)
    evaluation: Evaluation
    config: TrainConfig
    update: str  # the update spec as the user gave it
    verification: dict | None = None  # `verify_saved_bytes`, when asked for

    @property
    def convention(self) -> str:
        return self.evaluation.convention

    @property
    def table(self) -> pd.DataFrame:
        """The cost table: one row per operator, units in the column names."""
        import pandas as pd

        return pd.DataFrame(self.evaluation.rows, columns=list(LAYER_FIELDS))

    @property
    def totals(self) -> dict:
        return self.evaluation.totals

    @property
    def memory(self):
        return self.evaluation.memory

    @property
    def warnings(self) -> list[str]:
        return self.evaluation.warnings

    def to_dict(self) -> dict:
        c = self.config.options
        return {
            "model": self.model_name,
            "input_shape": list(self.graph.input_shape),
            "batch_size": self.graph.input_shape[0],
            **({"inputs": self.graph.input_specs} if self.graph.input_specs is not None else {}),
            "convention": self.convention,
            "update": self.update,
            "tracer": self.graph.tracer,
            "fingerprint": self.graph.fingerprint(),
            "optimizer": c.optimizer,
            "bits": {"weight": c.weight_bits, "activation": c.activation_bits,
                     "gradient": c.gradient_bits},
            "weights_in_flash": c.weights_in_flash,
            "layers": [{k: row[k] for k in LAYER_FIELDS} for row in self.evaluation.rows],
            "totals": dict(self.totals),
            "memory": self.memory.to_dict(),
            "warnings": list(self.warnings),
            **({"verify": dict(self.verification)} if self.verification else {}),
        }


@dataclass(frozen=True)
class ModelSource:
    """A model and what names and loads it, travelling together: `model` an nn.Module, a zoo
    name or ``module:callable``; `name` what outputs call it (default: its zoo name or class);
    `weights` a state_dict file (weights_only) and `classifier` (zoo name / import path only).
    Every entry point that takes a model takes one of these too."""

    model: object
    name: str | None = None
    weights: str | None = None
    classifier: bool = False


def resolve_model(model, model_name=None, weights=None, classifier=False):
    """An nn.Module as given, or one loaded from a zoo name / import path (or a ModelSource)."""
    if isinstance(model, ModelSource):
        return resolve_model(model.model, model.name or model_name, model.weights or weights,
                             model.classifier or classifier)
    if isinstance(model, nn.Module):
        return model, model_name or getattr(model, "ttplan_name", type(model).__name__)
    if isinstance(model, str):
        module, name = load_model(model, weights=weights, classifier=classifier)
        return module, model_name or name
    raise SpecError(f"model must be an nn.Module, a zoo name or module:callable, not {type(model).__name__}")


def build_config(graph: LayerGraph, update, options: CostOptions,
                 training_mode: bool = True) -> tuple[TrainConfig, str]:
    """(TrainConfig, update text) from an update spec string, an UpdateSpec, or a dict of
    {layer name: LayerUpdate}. Policy files are read above the cost model (`ttplan.profile`)."""
    if isinstance(update, dict):
        updates, text = dict(update), "custom"
    else:
        spec = parse_update(update) if isinstance(update, str) else update
        if not isinstance(spec, UpdateSpec):
            raise SpecError(f"update must be a spec string or a dict of LayerUpdate, not {type(update).__name__}")
        if spec.kind == "policy":
            raise SpecError("a policy file is read by ttplan.profile, not the cost model: pass "
                            "its layers as {name: LayerUpdate}")
        updates = resolve_updates(spec, graph)
        text = update if isinstance(update, str) else _spec_text(spec)
    validate_updates(updates, graph)
    return TrainConfig(updates, options, training_mode), text


def _spec_text(spec: UpdateSpec) -> str:
    return f"{spec.kind}:{spec.k}" if spec.k is not None else spec.kind


def with_batch_size(input_shape, batch_size) -> tuple[int, ...]:
    """`input_shape` as a tuple, its first dimension replaced by `batch_size` when given."""
    input_shape = tuple(int(d) for d in input_shape)
    if batch_size is None:
        return input_shape
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SpecError(f"batch size must be a positive integer, not {batch_size}")
    return (batch_size,) + input_shape[1:]


@dataclass(frozen=True)
class Tracing:
    """How a model is traced and run while it is priced, travelling together: `tracer` auto |
    fx | hooks; `rules` {module class | function | kind: Rule} priced for this call only;
    `blocks` a regular expression naming the blocks ``last-blocks:K`` counts
    (`costmodel.blocks`); `training_mode` (pytorch convention) False prices the modules in
    eval mode, as ``ttplan train`` runs them (BatchNorm keeps no batch statistics for
    backward). With an already traced graph only `training_mode` applies."""

    tracer: str = "auto"
    rules: object = None
    blocks: str | None = None
    training_mode: bool = True


DEFAULT_TRACING = Tracing()
EVAL_MODE = Tracing(training_mode=False)  # priced as `ttplan train` runs the modules

_TRACING_KEYWORDS = ("tracer", "rules", "blocks", "training_mode")
_MODEL_KEYWORDS = {"model_name": "name", "weights": "weights", "classifier": "classifier"}
MOVED_KEYWORDS = {
    **{k: f"pass tracing=ttplan.Tracing({k}=...)" for k in _TRACING_KEYWORDS},
    **{k: f"pass the model as ttplan.ModelSource(model, {v}=...)"
       for k, v in _MODEL_KEYWORDS.items()},
}


def tracing_or_default(tracing) -> Tracing:
    """`tracing` as given (a Tracing), or the default for None; anything else is refused."""
    if tracing is None:
        return DEFAULT_TRACING
    if not isinstance(tracing, Tracing):
        raise SpecError(f"tracing must be a Tracing (ttplan.Tracing(...)), not "
                        f"{type(tracing).__name__}")
    return tracing


@moved_keywords({**MOVED_KEYWORDS, "update_text": "the Profile's update is the update as "
                 "given; dataclasses.replace(profile, update=...) renames it"})
def profile(model, input_shape=None, *, update="all", options: CostOptions | None = None,
            batch_size=None, inputs=None, tracing: Tracing | None = None,
            graph: LayerGraph | None = None) -> Profile:
    """Trace `model` (an nn.Module, a zoo name, ``module:callable`` or a `ModelSource` with its
    name, weights and classifier) and cost training it.

    `update`: "none", "all", "bias-only", "last-layers:K", "last-blocks:K", or {layer name:
    LayerUpdate}; `options`: how it is costed (`CostOptions`). `batch_size` replaces dimension
    0 of `input_shape`, or of every input of `inputs` (a tensor, a tuple of tensors, a dict
    of keyword tensors, spec strings or an .npz: `costmodel.inputs`). `tracing`: the tracer,
    rules priced for this call only, the blocks' pattern and train/eval mode (`Tracing`).
    `graph`: an already traced graph (the model is then not traced again; a ModelSource's
    name, when given, names the profile).
    """
    options = options_or_default(options)
    tracing = tracing_or_default(tracing)
    if graph is None:
        given = resolve_inputs(inputs, input_shape, batch_size)
        module, name = resolve_model(model)
        graph = trace(module, given, name, tracing.tracer, rules=tracing.rules,
                      blocks=tracing.blocks)
    else:
        name = (model.name if isinstance(model, ModelSource) else None) or graph.model_name
    config, text = build_config(graph, update, options, tracing.training_mode)
    return Profile(name, graph, evaluate(graph, config), config, text)


__all__ = ["Profile", "profile", "LayerUpdate", "TrainConfig", "build_config", "resolve_model", "ModelSource",
           "Tracing", "EVAL_MODE", "with_batch_size"]
