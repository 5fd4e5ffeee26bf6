"""The latency and energy model of a device: few terms, each with a unit and a meaning.

A run trains `iterations` passes over `samples` support samples at `batch_size`, so it takes
steps = iterations x ceil(samples / batch_size) training steps, each costing the log row's cost
columns (devices.stepcost). Its end-to-end time (paper §3.2, A.4: load + probe/selection for
TinyTrain + training) is

  load_s   = load_s                                                  [s per run]
  fisher_s = fisher_mac_s x probe_macs                  (tinytrain)  [s per probe MAC]
  plan_s   = plan_s                                     (tinytrain)  [s per run]
  train_s  = steps x ( step_s                                        [s per step]
                     + dense_mac_s x (forward + backward_input MACs, not depthwise)
                     + depthwise_mac_s x (forward + backward_input MACs, depthwise)
                     + weight_grad_mac_s x (backward_weight MACs, not depthwise)
                     + depthwise_weight_grad_mac_s x (backward_weight MACs, depthwise)
                                                                     [each s per MAC]
                     + tensor_update_s x updated_tensors      [s per updated tensor per step]
                     + operator_s x forward_operators           [s per operator call]
                     + backward_operator_s x backward_operators [s per backward operator call]
                     + element_s x forward_elements     [s per element, operators without MACs]
                     + backward_element_s x backward_elements                 [the same]
                     + swap_s_per_byte x max(0, peak - available RAM) )
                                                                     [s per byte per step]

The probe's MACs (`probe_macs`, devices.probecost) are what it runs: the prototypes' forward
and each sample's forward over the support samples, and the backward of the probed tail down to
the earliest probed layer. One coefficient prices them all: the logs measure the probe once
per model (the Jetson's fisher_s; the Pi only inside its totals), too few rows to split it
into calls, elements and kinds of operator as the training step is.

Forward and input-gradient MACs share one coefficient: they are the same convolutions (an
input gradient is a transposed convolution of the same size), and logs of whole runs cannot
tell them apart. Weight-gradient MACs get their own: PyTorch computes them with other kernels.
Depthwise convolutions get their own pair: they do ~9-49 MACs per value moved, so they run
memory-bound, up to several times slower per MAC than dense and pointwise convolutions
(measured on this project's 2-core x86 host; notes/device_time_model.md), and models differ in
their share of them (17 % of MCUNet's forward MACs, 28 % of ProxylessNAS's). The operator and
element terms price what MACs do not (costmodel.costs.OperatorWork): a fixed cost per operator
PyTorch calls, and the memory-bound normalisations, activations and additions, whose time
follows the elements they write. Without them a calibration on two models mispredicted a third
with another number of layers or another ratio of MACs to activations by 20-29 % on this
project's host (notes/device_time_model.md). `available RAM`
is the device's RAM minus its reserve and
`peak` the step's peak under the device's runtime (peak_bytes_pytorch on a board running
PyTorch, peak_bytes_paper on a bare-metal engine); a configuration whose peak exceeds the
available RAM pages through swap on every step.

Energy (the paper's Energy = Power x Time) splits the same time into three parts with one
power each: overhead_w over load, fisher, plan and the per-step and per-tensor time,
compute_w over the MAC time, swap_w over the memory-pressure time. The paper's Pi shows why:
a batch-100 run waiting on swap draws ~0.8 W, a batch-1 run ~2 W.

Every value is fitted from logs (devices.calibrate); nothing here is hand-set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .profiles import DeviceProfile
from .stepcost import StepCost


@dataclass(frozen=True)
class Term:
    name: str
    unit: str
    meaning: str
    group: str  # time: the phase it belongs to; energy: unused


TIME_TERMS = (
    Term("load_s", "s per run", "loading the model and starting up", "load"),
    Term("fisher_mac_s", "s per probe MAC",
         "TinyTrain's Fisher probe on the device, per MAC it runs (probe_macs: forwards of "
         "the support samples and the backward of the probed tail; tinytrain runs only)",
         "fisher"),
    Term("plan_s", "s per run", "TinyTrain's layer/channel selection on the device "
         "(tinytrain runs only)", "plan"),
    Term("step_s", "s per step", "fixed cost of one training step: framework dispatch, data, "
         "loss, optimiser call", "train"),
    Term("dense_mac_s", "s per MAC", "forward and input-gradient MACs, not depthwise", "train"),
    Term("depthwise_mac_s", "s per MAC", "forward and input-gradient MACs of depthwise "
         "convolutions", "train"),
    Term("weight_grad_mac_s", "s per MAC", "weight-gradient MACs, not depthwise", "train"),
    Term("depthwise_weight_grad_mac_s", "s per MAC", "weight-gradient MACs of depthwise "
         "convolutions", "train"),
    Term("tensor_update_s", "s per updated tensor per step",
         "optimiser update and gradient bookkeeping of one parameter tensor", "train"),
    Term("operator_s", "s per operator call", "fixed cost of calling one operator in the "
         "forward pass, whatever its size", "train"),
    Term("backward_operator_s", "s per operator call", "fixed cost of one operator of the "
         "backward pass", "train"),
    Term("element_s", "s per element", "forward output elements of operators without MACs "
         "(normalisation, activations, additions: memory-bound)", "train"),
    Term("backward_element_s", "s per element", "the same operators' elements in the "
         "backward pass", "train"),
    Term("swap_s_per_byte", "s per byte per step", "memory pressure: paging the PyTorch "
         "peak in excess of the available RAM (RAM - reserve) on every step", "train"),
)
TIME_NAMES = tuple(t.name for t in TIME_TERMS)
PHASES = ("load", "fisher", "plan", "train")

ENERGY_TERMS = (
    Term("overhead_w", "W", "power during load, Fisher probe, planning, per-step, "
         "per-tensor and per-operator time", "load_s fisher_mac_s plan_s step_s "
         "tensor_update_s operator_s backward_operator_s"),
    Term("compute_w", "W", "power while computing MACs and elements",
         "dense_mac_s depthwise_mac_s weight_grad_mac_s depthwise_weight_grad_mac_s "
         "element_s backward_element_s"),
    Term("swap_w", "W", "power while stalled on memory pressure", "swap_s_per_byte"),
)
ENERGY_NAMES = tuple(t.name for t in ENERGY_TERMS)
ENERGY_GROUPS = {t.name: tuple(t.group.split()) for t in ENERGY_TERMS}


@dataclass(frozen=True)
class Run:
    """One end-to-end run: the method (only `tinytrain` has probe and selection phases), its
    workload, one step's costs at `cost.batch_size`, and the MACs of its Fisher probe
    (devices.probecost; 0: it did not probe, as a tinytrain policy trained from its file;
    None: not counted, which a tinytrain run must not be)."""

    method: str
    iterations: int
    samples: int
    cost: StepCost
    probe_macs: int | None = None

    @property
    def steps(self) -> int:
        return self.iterations * math.ceil(self.samples / self.cost.batch_size)

    @property
    def probes(self) -> bool:
        """Whether the run probes and plans on the device: a tinytrain run whose probe ran."""
        return self.method.lower() == "tinytrain" and self.probe_macs != 0

    def probe_work(self) -> float:
        """The probe's MACs of a probing run (0 for any other run)."""
        if not self.probes:
            return 0.0
        if self.probe_macs is None:
            raise ValueError("a tinytrain run's probe_macs must be counted "
                             "(devices.probecost.run_probe_macs)")
        return float(self.probe_macs)


def runtime_peak(cost: StepCost, device: DeviceProfile) -> int:
    """The peak the device's RAM must hold: its runtime's convention."""
    return cost.peak_bytes_paper if device.runtime == "paper" else cost.peak_bytes_pytorch


def time_features(run: Run, device: DeviceProfile) -> dict[str, float]:
    """What each time term multiplies (its coefficient's unit times this is seconds)."""
    c, steps = run.cost, run.steps
    available = device.available_bytes
    excess = 0 if available is None else max(0, runtime_peak(c, device) - available)
    return {
        "load_s": 1.0,
        "fisher_mac_s": run.probe_work(),
        "plan_s": 1.0 if run.probes else 0.0,
        "step_s": float(steps),
        "dense_mac_s": float(steps) * (c.forward_macs + c.backward_input_macs
                                       - c.depthwise_forward_macs
                                       - c.depthwise_backward_input_macs),
        "depthwise_mac_s": float(steps) * (c.depthwise_forward_macs
                                           + c.depthwise_backward_input_macs),
        "weight_grad_mac_s": float(steps) * (c.backward_weight_macs
                                             - c.depthwise_backward_weight_macs),
        "depthwise_weight_grad_mac_s": float(steps) * c.depthwise_backward_weight_macs,
        "tensor_update_s": float(steps) * c.updated_tensors,
        "operator_s": float(steps) * c.forward_operators,
        "backward_operator_s": float(steps) * c.backward_operators,
        "element_s": float(steps) * c.forward_elements,
        "backward_element_s": float(steps) * c.backward_elements,
        "swap_s_per_byte": float(steps) * excess,
    }


def time_components(run: Run, terms: dict[str, float], device: DeviceProfile) -> dict[str, float]:
    """Seconds contributed by each time term."""
    features = time_features(run, device)
    return {name: terms[name] * features[name] for name in TIME_NAMES}


def energy_features(components: dict[str, float]) -> dict[str, float]:
    """Seconds spent under each power term."""
    return {power: math.fsum(components[n] for n in ENERGY_GROUPS[power])
            for power in ENERGY_NAMES}


@dataclass(frozen=True)
class Prediction:
    phases: dict[str, float]  # load_s, fisher_s, plan_s, train_s
    total_s: float
    energy_j: float | None


def predict(run: Run, time_terms: dict[str, float], energy_terms: dict[str, float] | None,
            device: DeviceProfile) -> Prediction:
    comps = time_components(run, time_terms, device)
    by_phase = {p: 0.0 for p in PHASES}
    for term in TIME_TERMS:
        by_phase[term.group] += comps[term.name]
    phases = {f"{p}_s": by_phase[p] for p in PHASES}
    energy = None
    if energy_terms is not None:
        seconds = energy_features(comps)
        energy = math.fsum(energy_terms[p] * seconds[p] for p in ENERGY_NAMES)
    return Prediction(phases, math.fsum(phases.values()), energy)


def linear_time_limit(time_terms: dict[str, float], *, steps: int, probe_macs: int | None,
                      limit_s: float) -> tuple[tuple[tuple[str, float], ...], float]:
    """A time budget as a linear constraint on a configuration's per-step totals, for a
    configuration within the available RAM (no memory pressure):
        Σ coefficient x quantity ≤ limit  with quantities forward_macs, backward_input_macs,
        backward_weight_macs, updated_tensors, forward_operators, forward_elements,
        backward_operators, backward_elements (planner.selection.select.LinearLimit).
    Each MAC total is priced at the dense rate and its depthwise part (`depthwise_forward_macs`,
    `depthwise_backward_input_macs`, `depthwise_backward_weight_macs`) at the difference of
    the two rates, which is exactly the model's time. `probe_macs`: the Fisher probe's MACs
    when the run probes and plans on the device (None otherwise): a fixed cost, as the probe's
    work does not depend on the configuration chosen."""
    t = time_terms
    fixed = t["load_s"] + steps * t["step_s"]
    if probe_macs is not None:
        fixed += t["fisher_mac_s"] * probe_macs + t["plan_s"]
    depthwise_extra_s = t["depthwise_mac_s"] - t["dense_mac_s"]
    coefficients = (("forward_macs", steps * t["dense_mac_s"]),
                    ("depthwise_forward_macs", steps * depthwise_extra_s),
                    ("backward_input_macs", steps * t["dense_mac_s"]),
                    ("depthwise_backward_input_macs", steps * depthwise_extra_s),
                    ("backward_weight_macs", steps * t["weight_grad_mac_s"]),
                    ("depthwise_backward_weight_macs",
                     steps * (t["depthwise_weight_grad_mac_s"] - t["weight_grad_mac_s"])),
                    ("updated_tensors", steps * t["tensor_update_s"]),
                    ("forward_operators", steps * t["operator_s"]),
                    ("forward_elements", steps * t["element_s"]),
                    ("backward_operators", steps * t["backward_operator_s"]),
                    ("backward_elements", steps * t["backward_element_s"]))
    return coefficients, limit_s - fixed
