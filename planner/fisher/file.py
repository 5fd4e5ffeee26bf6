"""The Fisher file: what `ttplan fisher` writes and `ttplan plan` reads.

Format "ttplan-fisher", version 2 (every key required, no others):

    format            "ttplan-fisher"
    version           2
    model             {name: str, fingerprint: str, weights: str}
                        fingerprint = LayerGraph.fingerprint() of the traced model;
                        weights = `weights_digest(model)` of the weights probed
    loss              "protonet" | "ce" | "custom"
    seed              int
    num_samples       int > 0
    peak_saved_bytes  int >= 0
    layers            [{name: str, channel_fisher: [number >= 0, ...], potential: number}]
                        in probe order; potential = fsum(channel_fisher)

Values are finite and at most `MAX_FISHER_VALUE`: Δ is a mean of squares of float32 sums, so a
real probe stays below (3.4e38)² ≈ 1.2e77; anything larger is a damaged or forged file, and
sums and ratios of values below the bound cannot overflow. A file whose model fingerprint or
weights differ from the model it is used with is refused, naming both.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ttplan.costmodel.errors import PolicyError, SpecError

from ..jsonio import check_header, check_keys, load_json

FORMAT = "ttplan-fisher"
VERSION = 2
MAX_FISHER_VALUE = 1e100


def weights_digest(model: nn.Module) -> str:
    """A short SHA-256 of every parameter and buffer: names in sorted order, dtype, shape and
    the raw bytes (CPU, contiguous), so the same weights give the same digest on any run."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{str(tensor.dtype)}|{list(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()[:16]


@dataclass
class FisherResult:
    """Δ_o per output channel (channel order) and P per layer, in the order the layers were given."""

    layers: dict[str, list[float]]
    potential: dict[str, float]
    num_samples: int
    loss: str
    seed: int
    time_s: float = field(compare=False)  # a measurement of this run, not part of the result
    peak_saved_bytes: int = 0
    weights: str | None = None  # weights_digest of the probed model (None: not known)

    def to_json_dict(self, model_name: str, fingerprint: str) -> dict[str, Any]:
        """A versioned, JSON-ready dict. Layers are a list so their order survives sorted keys."""
        check_values(self.layers, "the probe")
        if self.weights is None:
            raise PolicyError("this Fisher result does not record which weights it was "
                              "computed with; compute it with fisher_information")
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": {"name": model_name, "fingerprint": fingerprint, "weights": self.weights},
            "loss": self.loss,
            "seed": self.seed,
            "num_samples": self.num_samples,
            # No time here: it differs run to run, and the same samples and seed must give a
            # byte-identical file. The CLI prints the measured time.
            "peak_saved_bytes": self.peak_saved_bytes,
            "layers": [
                {"name": name, "channel_fisher": list(deltas), "potential": self.potential[name]}
                for name, deltas in self.layers.items()
            ],
        }

    @classmethod
    def from_json_dict(
        cls,
        d: Any,
        expected_fingerprint: str | None,
        *,
        expected_model: str | None = None,
        source: str = "fisher.json",
    ) -> FisherResult:
        """Validate a dict made by `to_json_dict` strictly; refuse another model's probe.

        `expected_fingerprint=None` skips the model check (for inspecting a file on its own).
        Every problem is a one-line PolicyError naming `source`.
        """
        return _parse(d, expected_fingerprint, expected_model, source)


def fisher_for(fisher, graph) -> FisherResult | None:
    """The FisherResult a planner is given as `fisher`: None, a FisherResult, what
    `ttplan.probe_fisher` returns (it carries one as `.result`), or a Fisher file path
    (checked against `graph`'s fingerprint and model name; with no graph, not checked)."""
    if fisher is None or isinstance(fisher, FisherResult):
        return fisher
    if isinstance(getattr(fisher, "result", None), FisherResult):
        return fisher.result
    if isinstance(fisher, (str, Path)):
        if graph is None:
            return load_fisher(fisher, None)
        return load_fisher(fisher, graph.fingerprint(), expected_model=graph.model_name)
    raise SpecError("fisher must be a FisherResult, what probe_fisher returns or a Fisher file "
                    f"path, not {type(fisher).__name__}")


def load_fisher(
    path: str | Path, expected_fingerprint: str | None, *, expected_model: str | None = None
) -> FisherResult:
    """Read and validate a Fisher file written with `save_json(path, result.to_json_dict(...))`."""
    return FisherResult.from_json_dict(
        load_json(path, what="fisher"), expected_fingerprint, expected_model=expected_model, source=str(path)
    )


def check_weights(result: FisherResult, model: nn.Module, source: str = "the Fisher result") -> None:
    """Refuse a probe of other weights than `model`'s (a result that records none passes)."""
    if result.weights is None:
        return
    current = weights_digest(model)
    if result.weights != current:
        raise PolicyError(f"{source} was computed with other weights (digest {result.weights}) "
                          f"than this model's (digest {current}): a model builder that is not "
                          "seeded makes new weights on every call; seed it (torch.manual_seed "
                          "in the builder), or save the weights once and pass the same "
                          "--weights to `ttplan fisher` and this command")


def check_values(layers: dict[str, list[float]], where: str) -> None:
    """Every Δ finite, non-negative and at most MAX_FISHER_VALUE: one line naming the layer."""
    for name, deltas in layers.items():
        bad = next((v for v in deltas if not (_number(v) and 0 <= v <= MAX_FISHER_VALUE)), None)
        if bad is not None:
            raise PolicyError(f"{where} gives layer {name} a Fisher value {bad!r}; values must "
                              f"be finite, non-negative and at most {MAX_FISHER_VALUE:g} (are "
                              "the model's outputs or gradients finite on these samples?)")


# ----------------------------------------------------------------------------- parsing

_TOP_KEYS = {"format", "version", "model", "loss", "seed", "num_samples", "peak_saved_bytes", "layers"}
_MODEL_KEYS = {"name", "fingerprint", "weights"}
_LAYER_KEYS = {"name", "channel_fisher", "potential"}


def _short(fingerprint: str) -> str:
    return fingerprint if len(fingerprint) <= 12 else fingerprint[:12] + "…"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse(d: Any, expected_fingerprint: str | None, expected_model: str | None, source: str) -> FisherResult:
    def bad(problem: str) -> PolicyError:
        return PolicyError(f"{source} is not a valid Fisher file: {problem}")

    check_header(d, source, FORMAT, VERSION, "Fisher file")
    check_keys(d, _TOP_KEYS, "the file", bad)

    model = d["model"]
    if not (isinstance(model, dict) and set(model) == _MODEL_KEYS
            and all(isinstance(model[k], str) and model[k] for k in model)):
        raise bad("'model' must be {name, fingerprint, weights} strings")
    if expected_fingerprint is not None and model["fingerprint"] != expected_fingerprint:
        target = expected_model or "this model"
        raise PolicyError(
            f"{source} was measured on model {model['name']} (fingerprint {_short(model['fingerprint'])}), "
            f"not on {target} (fingerprint {_short(expected_fingerprint)})"
        )

    if not (isinstance(d["loss"], str) and d["loss"]):
        raise bad("'loss' must be a non-empty string")
    if not (isinstance(d["seed"], int) and not isinstance(d["seed"], bool)):
        raise bad("'seed' must be an integer")
    if not (_count(d["num_samples"]) and d["num_samples"] > 0):
        raise bad("'num_samples' must be a positive integer")
    if not _count(d["peak_saved_bytes"]):
        raise bad("'peak_saved_bytes' must be a non-negative integer")

    records = d["layers"]
    if not isinstance(records, list) or not records:
        raise bad("'layers' must be a non-empty list")
    layers: dict[str, list[float]] = {}
    potential: dict[str, float] = {}
    for record in records:
        if not isinstance(record, dict) or set(record) != _LAYER_KEYS:
            raise bad(f"each layer must have exactly the keys {sorted(_LAYER_KEYS)}")
        name, deltas, total = record["name"], record["channel_fisher"], record["potential"]
        if not isinstance(name, str) or name in layers:
            raise bad(f"layer name {name!r} is not a string or appears twice")
        if not isinstance(deltas, list) or not deltas or not all(
                _number(v) and 0 <= v <= MAX_FISHER_VALUE for v in deltas):
            raise bad(f"layer {name}: 'channel_fisher' must be a non-empty list of numbers in "
                      f"[0, {MAX_FISHER_VALUE:g}]")
        if not (_number(total) and math.isclose(total, math.fsum(deltas), rel_tol=1e-9, abs_tol=1e-300)):
            raise bad(f"layer {name}: 'potential' is not the sum of its channel_fisher values")
        layers[name] = [float(v) for v in deltas]
        potential[name] = float(total)

    return FisherResult(
        layers=layers,
        potential=potential,
        num_samples=d["num_samples"],
        loss=d["loss"],
        seed=d["seed"],
        time_s=math.nan,  # not stored: see to_json_dict
        peak_saved_bytes=d["peak_saved_bytes"],
        weights=model["weights"],
    )
