"""apply_policy: an ordinary optimiser step changes exactly the selected parameters."""

import math
import random

import pytest
import torch
from torch import nn

from ttplan.costmodel.errors import PolicyError
from ttplan.costmodel.zoo import build_zoo_model
from ttplan.planner.api import plan
from ttplan.planner.policy.apply import apply_policy
from ttplan.planner.fisher import FisherResult, default_candidate_layers
from ttplan.costmodel.options import cost_options

SHAPE = (2, 3, 16, 16)


def net(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 12, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(12, 5))


def policy_with(model, layers):
    d = plan(model, method="none", inputs=SHAPE).to_dict()
    d["layers"] = layers
    return d


def train_steps(model, params, steps=2, **sgd):
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 3])
    model.eval()  # BatchNorm running statistics are buffers: eval mode keeps them
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, **sgd)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(before, model):
    return {n: (p.detach() != before[n]) for n, p in model.named_parameters()}


def test_output_channel_selection_changes_exactly_those_entries():
    model = net()
    policy = policy_with(model, [
        {"name": "3", "update_weight": True, "update_bias": True, "channel_axis": 0,
         "channels": [1, 4, 9]},
        {"name": "10", "update_weight": False, "update_bias": True, "channel_axis": 0,
         "channels": None},
    ])
    applied = apply_policy(model, policy)
    assert set(applied.trainable) == {"3.weight", "4.weight", "4.bias", "10.bias"}
    before = snapshot(model)
    train_steps(model, applied.parameters())
    diff = changed(before, model)
    rows = torch.zeros(16, dtype=torch.bool)
    rows[[1, 4, 9]] = True
    assert diff["3.weight"].flatten(1).any(dim=1).equal(rows)  # selected rows moved, only they
    assert diff["4.weight"].equal(rows)  # attached BatchNorm scale: the same output channels
    assert diff["4.bias"].all()  # its shift is the (folded) bias
    assert diff["10.bias"].all() and not diff["10.weight"].any()
    for name in ("0.weight", "1.weight", "1.bias", "6.weight", "6.bias"):
        assert not diff[name].any(), name
        assert not dict(model.named_parameters())[name].requires_grad


def test_input_channel_selection_masks_columns_and_trains_the_whole_scale():
    model = net()
    policy = policy_with(model, [
        {"name": "3", "update_weight": True, "update_bias": False, "channel_axis": 1,
         "channels": [0, 1]}])
    applied = apply_policy(model, policy)
    before = snapshot(model)
    train_steps(model, applied.parameters())
    diff = changed(before, model)
    columns = diff["3.weight"].transpose(0, 1).flatten(1).any(dim=1)
    assert columns.tolist() == [True, True] + [False] * 6
    assert "4.weight" in applied.trainable and "4.bias" not in applied.trainable


def test_weight_decay_would_move_masked_weights_and_the_mask_is_provided():
    model = net()
    policy = policy_with(model, [
        {"name": "6", "update_weight": True, "update_bias": False, "channel_axis": 0,
         "channels": [0]}])
    applied = apply_policy(model, policy)
    before = snapshot(model)
    train_steps(model, applied.parameters(), weight_decay=0.1)
    moved = changed(before, model)["6.weight"].flatten(1).any(dim=1)
    assert moved[1:].any()  # documented: decay is applied after the gradient hooks
    assert applied.masks["6.weight"].shape == model[6].weight.shape
    applied.remove()
    assert applied.handles == []


def test_a_planned_policy_trains_what_the_cost_model_counts():
    model = build_zoo_model("mcunet-5fps")
    rng = random.Random(0)
    modules = dict(model.named_modules())
    deltas = {n: [rng.random() for _ in range(modules[n].out_channels)]
              for n in default_candidate_layers(model)}
    fisher = FisherResult(deltas, {k: math.fsum(v) for k, v in deltas.items()}, 5, "ce", 0, 0.0, 0)
    policy = plan(model, fisher=fisher, inputs=(1, 3, 32, 32), compute=0.1,
                  options=cost_options(convention="pytorch"))
    applied = apply_policy(model, policy)
    # pytorch convention: trainable_params counts the selected entries of every tensor
    selected = sum(int(applied.masks[n].sum()) if n in applied.masks else p.numel()
                   for n, p in applied.trainable.items())
    assert selected == policy.predicted["totals"]["trainable_params"]
    before = snapshot(model)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model.eval()
    opt = torch.optim.SGD(applied.parameters(), lr=1.0)
    model(x).square().sum().backward()
    opt.step()
    for name, mask in changed(before, model).items():
        if name not in applied.trainable:
            assert not mask.any(), name
        elif name in applied.masks:
            assert not (mask & (applied.masks[name] == 0)).any(), name


def test_another_model_is_refused():
    policy = plan(net(), method="fulltrain", inputs=SHAPE)
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    with pytest.raises(PolicyError, match="planned for"):
        apply_policy(other, policy)
