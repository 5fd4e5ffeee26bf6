"""`profile`: the cost of one training configuration of one model, for people and scripts.

The JSON form (`Profile.to_dict`) is a documented contract (README, "Profile JSON"):
model, input_shape, batch_size, convention, update, tracer, fingerprint, optimizer, bits,
weights_in_flash, layers (one object per operator), totals, memory (integers, bytes),
warnings. Per-layer numbers are for the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch.nn as nn

from .config import (LayerUpdate, TrainConfig, resolve_updates, resolve_weights_in_flash,
                     validate_updates)
from .costs import Evaluation, evaluate
from .errors import SpecError
from .graph import LayerGraph
from .specs import UpdateSpec, parse_update
from .trace import trace
from .zoo import load_model

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

    @property
    def convention(self) -> str:
        return self.evaluation.convention

    @property
    def table(self) -> pd.DataFrame:
        """The cost table: one row per operator, units in the column names."""
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
        c = self.config
        return {
            "model": self.model_name,
            "input_shape": list(self.graph.input_shape),
            "batch_size": self.graph.input_shape[0],
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
        }


def resolve_model(model, model_name=None, weights=None, classifier=False):
    """An nn.Module as given, or one loaded from a zoo name / import path."""
    if isinstance(model, nn.Module):
        return model, model_name or getattr(model, "ttplan_name", type(model).__name__)
    if isinstance(model, str):
        module, name = load_model(model, weights=weights, classifier=classifier)
        return module, model_name or name
    raise SpecError(f"model must be an nn.Module, a zoo name or module:callable, not {type(model).__name__}")


def build_config(graph: LayerGraph, update, convention: str, optimizer="sgd", weight_bits=32,
                 activation_bits=32, gradient_bits=32, weights_in_flash=None):
    """(TrainConfig, update text) from an update spec string, an UpdateSpec, or a dict of
    {layer name: LayerUpdate}. A policy file (".json") is read by `planner.policy`."""
    if convention == "pytorch" and (weight_bits, activation_bits, gradient_bits) != (32, 32, 32):
        raise SpecError("bit-width options apply to --convention paper only; the pytorch "
                        "convention uses the tensors' own dtypes")
    weights_in_flash = resolve_weights_in_flash(convention, weights_in_flash)
    if isinstance(update, dict):
        updates, text = dict(update), "custom"
    else:
        spec = parse_update(update) if isinstance(update, str) else update
        if not isinstance(spec, UpdateSpec):
            raise SpecError(f"update must be a spec string or a dict of LayerUpdate, not {type(update).__name__}")
        if spec.kind == "policy":
            from ttplan.planner.policy import load_policy_updates  # the planner owns policy files
            updates = load_policy_updates(spec.path, graph)
            text = spec.path
        else:
            updates = resolve_updates(spec, graph)
            text = update if isinstance(update, str) else _spec_text(spec)
    validate_updates(updates, graph)
    config = TrainConfig(updates, optimizer, weight_bits, activation_bits, gradient_bits,
                         weights_in_flash)
    return config, text


def _with_policy_modules(module, name, update, input_shape):
    """A TinyTL policy trains lite-residual modules the plain model does not have: add them
    (as `ttplan plan --method tinytl` did) so that its layers exist and are priced."""
    if not (isinstance(update, str) and parse_update(update).kind == "policy"):
        return module, name
    from ttplan.planner.policy import load_policy
    from ttplan.planner.tinytl import LITE_ATTR, add_lite_residuals

    if load_policy(update).method == "tinytl" and \
            not any(LITE_ATTR in path.split(".") for path, _ in module.named_modules()):
        return add_lite_residuals(module, input_shape), f"{name}+lite-residual"
    return module, name


def _spec_text(spec: UpdateSpec) -> str:
    return f"{spec.kind}:{spec.k}" if spec.k is not None else spec.kind


def profile(model, input_shape=(1, 3, 128, 128), *, update="none", convention="paper",
            batch_size=None, optimizer="sgd", weight_bits=32, activation_bits=32,
            gradient_bits=32, weights_in_flash=None, model_name=None, weights=None,
            classifier=False, tracer="auto", graph=None) -> Profile:
    """Trace `model` (an nn.Module, a zoo name or ``module:callable``) and cost training it.

    `update`: "none", "all", "bias-only", "last-layers:K", "last-blocks:K", a policy JSON
    path, or {layer name: LayerUpdate}. `batch_size` replaces dimension 0 of `input_shape`.
    `weights_in_flash`: None means the convention's default (paper: flash, pytorch: RAM).
    """
    input_shape = tuple(int(d) for d in input_shape)
    if batch_size is not None:
        if batch_size < 1:
            raise SpecError(f"batch size must be a positive integer, not {batch_size}")
        input_shape = (int(batch_size),) + input_shape[1:]
    if graph is None:
        module, name = resolve_model(model, model_name, weights, classifier)
        module, name = _with_policy_modules(module, name, update, input_shape)
        graph = trace(module, input_shape, name, tracer)
    else:
        name = model_name or graph.model_name
    config, text = build_config(graph, update, convention, optimizer, weight_bits,
                                activation_bits, gradient_bits, weights_in_flash)
    return Profile(name, graph, evaluate(graph, config, convention), config, text)


__all__ = ["Profile", "profile", "LayerUpdate", "TrainConfig", "build_config", "resolve_model"]
