"""The Fisher probe's work (devices.probecost): hand-counted on a small model, checked against
the MACs PyTorch's own flop formulas count while the probe runs, and what the whole-run device
model prices the Fisher phase by."""

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from ttplan.devices.calibrate import builtin_calibration, measured_runs
from ttplan.devices.logs import load_device_logs
from ttplan.devices.model import Run, time_features
from ttplan.devices.probecost import run_probe_macs
from ttplan.devices.profiles import DeviceProfile
from ttplan.devices.stepcost import StepCost
from ttplan.planner.fisher import default_candidate_layers, fisher_information


class _Tiny(nn.Module):
    """conv 3->4 (3x3) -> ReLU -> conv 4->8 (1x1) -> global average -> linear 8->5."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.pool(self.conv2(self.relu(self.conv1(x)))).flatten(1))


SHAPE = (1, 3, 8, 8)
# One sample: F = conv1 4x8x8 outputs x 3x3x3 (6912) + conv2 8x8x8 x 4 (2048) + fc 5 x 8 (40)
# = 9000 MACs. The probe scores the last ceil(0.44 x 3) = 2 layers, conv2 and fc; its backward
# runs from the loss to conv2's output: the input gradients of the pool and fc, 40 MACs.
PER_SAMPLE = 2 * 9000 + 40


class _CountMacs(TorchDispatchMode):
    """MACs of every aten call PyTorch's flop counter has a formula for (flops / 2)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


def test_probe_macs_by_hand():
    module = _Tiny()
    assert default_candidate_layers(module) == ["conv2", "fc"]
    assert run_probe_macs(module, SHAPE, 6) == 6 * PER_SAMPLE == 108_240
    assert run_probe_macs(module, (4, 3, 8, 8), 6) == 108_240  # the batch does not matter
    # all three layers probed: the backward reaches conv1's output, adding conv2's input
    # gradient (2048 MACs)
    assert run_probe_macs(module, SHAPE, 1, fisher_layers=1.0) == PER_SAMPLE + 2048


@pytest.mark.parametrize("batch_size", [1, 3])
def test_probe_macs_is_what_the_probe_runs(batch_size):
    """The probe's own MACs, counted by PyTorch's flop formulas while it runs, are probe_macs
    plus the loss's: ProtoNet's cosine logits, N queries x K classes x D features, forward
    and input gradient (the model's work is all probe_macs covers)."""
    torch.manual_seed(0)
    module = _Tiny()
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 0, 1, 1, 2, 2])
    counter = _CountMacs()
    with counter:
        fisher_information(module, default_candidate_layers(module), x, y, loss="protonet",
                           seed=0, batch_size=batch_size)
    loss_macs = 2 * 6 * 3 * 5
    assert counter.flops // 2 == run_probe_macs(module, SHAPE, 6) + loss_macs


def test_fisher_phase_follows_the_probe():
    cost = StepCost(1, *([1000] * 13))
    device = DeviceProfile("synthetic", ram_bytes=None)
    assert time_features(Run("tinytrain", 1, 25, cost, 123_456), device)["fisher_mac_s"] == 123_456
    # a tinytrain policy trained from its file did not probe (nor plan)
    quiet = time_features(Run("tinytrain", 1, 25, cost, 0), device)
    assert quiet["fisher_mac_s"] == 0 and quiet["plan_s"] == 0
    assert time_features(Run("lastlayer", 1, 25, cost), device)["fisher_mac_s"] == 0
    with pytest.raises(ValueError, match="probe_macs must be counted"):
        time_features(Run("tinytrain", 1, 25, cost), device)


def test_shipped_fisher_phases_differ_by_model():
    """Issue 16: the built-in calibrations no longer give every model the same probe time."""
    runs = [m for m in measured_runs(load_device_logs()) if m.run.method == "tinytrain"]
    assert all(m.run.probe_macs > 0 for m in runs)
    for device in ("pi-zero-2", "jetson-nano"):
        cal = builtin_calibration(device)
        fisher = {m.model: cal.predict(m.run).phases["fisher_s"]
                  for m in runs if m.run.cost.batch_size == 1}
        assert len(set(fisher.values())) == 3, device
        ratio = {m.model: m.run.probe_macs for m in runs}
        assert fisher["mcunet-5fps"] / fisher["mbv2-w0.35"] == pytest.approx(
            ratio["mcunet-5fps"] / ratio["mbv2-w0.35"], rel=1e-9)
