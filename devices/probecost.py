"""What TinyTrain's Fisher probe runs, counted in MACs: the work the whole-run device model
prices its Fisher phase by (devices.model, term `fisher_mac_s`).

planner.fisher.probe runs, over a support set of N samples with the ProtoNet loss:
  prototypes  one forward of every sample, without gradient (planner.fisher.losses);
  probe       each sample's (augmented) forward, then the backward from the loss down to the
              output of the earliest probed layer: every parameter is frozen and that output is
              made a leaf, so the backward computes the input gradients of the operators after
              it and nothing else (no weight gradient, nothing below it).
So, with F the forward MACs of one sample and B the forward MACs of the operators after the
earliest probed layer (an input gradient does its forward's MACs, a transposed product),

    probe_macs = N x (2 F + B)

whatever the probe's batch size (MACs grow with the batch; calls do not, and the whole-run
model has too few probe measurements to price them: notes/device_time_model.md). F and B are
the per-layer model's definition of the same work (devices.layermodel.probe_work, which the
host's per-layer calibration prices kind by kind), summed over kinds.
"""

from __future__ import annotations

import math

from ttplan.costmodel.inputs import at_batch, from_json
from ttplan.costmodel.profile import resolve_model
from ttplan.costmodel.trace import trace
from ttplan.planner.fisher import default_candidate_layers

from .layermodel import probe_work


def probe_macs_per_sample(graph, candidates) -> int:
    """2 F + B of one sample (module docstring) on a traced `graph`; `candidates`: the module
    names the probe scores. A graph traced at batch b counts b samples: divided by b."""
    work = probe_work(graph, set(candidates))
    forward = math.fsum(w[0] for key, w in work.items() if key.endswith("/forward"))
    total = forward + math.fsum(w[0] for w in work.values())  # prototypes + probe
    return int(round(total / int(graph.input_shape[0])))


def run_probe_macs(module, inputs, samples: int, *, fisher_layers: float | None = None) -> int:
    """probe_macs of a run that probes `samples` support samples of `module` (an nn.Module) fed
    `inputs` (an input shape or costmodel.inputs.ModelInputs; its batch is ignored), scoring
    the default candidate layers (the last `fisher_layers` of them, planner.fisher)."""
    graph = trace(module, at_batch(inputs, 1), "model")
    args = () if fisher_layers is None else (fisher_layers,)
    candidates = default_candidate_layers(module, *args)
    return int(samples) * probe_macs_per_sample(graph, candidates)


def probe_macs_of_run(method: str, model, inputs, samples: int, *,
                      fisher_layers: float | None = None) -> int | None:
    """probe_macs of a `method` run on the device (devices.model.Run): counted for tinytrain,
    which probes, None for any other method. `model`: an nn.Module or a name
    (costmodel.profile.resolve_model)."""
    if method.lower() != "tinytrain":
        return None
    module, _ = resolve_model(model)
    return run_probe_macs(module, inputs, samples, fisher_layers=fisher_layers)


def graph_inputs(graph):
    """The inputs `graph` was traced with: ModelInputs, or its input shape (the shorthand)."""
    return from_json(graph.input_specs) if graph.input_specs else tuple(graph.input_shape)
