"""What-if sweeps: how cost grows as more of the network is trained.

`sweep_last_k` costs `last-blocks:K` or `last-layers:K` for a range of K on one traced graph
(the shape of the paper's Table 7: saved activations to back-propagate through the last K
blocks/layers), in both memory conventions if asked.
"""

from __future__ import annotations

from ttplan.costmodel.config import TrainConfig, mac_blocks, resolve_updates
from ttplan.costmodel.costs import evaluate
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.graph import LayerGraph
from ttplan.costmodel.options import CostOptions, PAPER
from ttplan.costmodel.specs import UpdateSpec, parse_int

SWEEP_FIELDS = ("k", "convention", "saved_activation_bytes", "saved_kib", "peak_bytes",
                "backward_macs", "trainable_params")


def sweep_options(conventions) -> tuple[CostOptions, ...]:
    """The options of a sweep's columns: frozen weights counted in RAM under every convention,
    so the columns compare."""
    return tuple(PAPER.replace(weights_in_flash=False).under(c) for c in conventions)


def sweep_last_k(graph: LayerGraph, unit: str, ks,
                 options: tuple[CostOptions, ...] = (PAPER,)) -> list[dict]:
    """One row per (K, options) for updating the last K `unit`s ("blocks" or "layers")."""
    if unit not in ("blocks", "layers"):
        raise SpecError(f"sweep unit must be blocks or layers, not {unit!r}")
    limit = len(mac_blocks(graph)) if unit == "blocks" else len(graph.mac_layers())
    rows = []
    for k in ks:
        if not 1 <= k <= limit:
            raise SpecError(f"K={k} is out of range: the model has {limit} {unit}")
        updates = resolve_updates(UpdateSpec(f"last-{unit}", k), graph)
        for option in options:
            e = evaluate(graph, TrainConfig(updates, option))
            rows.append({"k": k, "convention": option.convention,
                         "saved_activation_bytes": e.memory.saved_activation_bytes,
                         "saved_kib": round(e.memory.saved_activation_bytes / 1024, 1),
                         "peak_bytes": e.memory.peak_bytes,
                         "backward_macs": e.totals["backward_macs"],
                         "trainable_params": e.totals["trainable_params"]})
    return rows


# More K values than any sweep needs, and a bound on the list one range may expand into.
MAX_K_VALUES = 10_000


def parse_k_range(text: str) -> list[int]:
    """"1-6" → [1..6]; "1,2,4" → [1, 2, 4]. Positive ASCII integers; a range runs upwards."""
    expected = "use e.g. 1-6 or 1,2,4 (positive whole numbers, a range from low to high)"
    try:
        if "-" in text:
            low, high = (parse_int(part, "K", 1) for part in text.split("-", 1))
            if low > high:
                raise SpecError(f"malformed K range {text!r}: {low} > {high}; {expected}")
            if high - low >= MAX_K_VALUES:
                raise SpecError(f"K range {text!r} has more than {MAX_K_VALUES:,} values")
            return list(range(low, high + 1))
        values = [parse_int(part, "K", 1) for part in text.split(",", MAX_K_VALUES)]
    except SpecError as exc:
        if str(exc).startswith(("malformed", "K range")):
            raise
        raise SpecError(f"malformed K range {text[:40]!r}: {expected}") from None
    if len(values) > MAX_K_VALUES:
        raise SpecError(f"K list has more than {MAX_K_VALUES:,} values")
    return values
