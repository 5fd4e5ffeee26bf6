"""The Fisher probe (Eq. 2), the support-set loaders and the Fisher JSON files.

The probe is checked against a deliberately naive re-computation: one sample at a time, the
gradient of that sample's loss with respect to each layer's output by `torch.autograd.grad`,
and Eq. 2 written out with explicit loops over samples and channels.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ttplan.costmodel.errors import PolicyError, SpecError
from ttplan.planner.support.sources import (IMAGENET_MEAN, IMAGENET_STD, augment, load_support,
                                           synthetic_data)
from ttplan.planner.fisher import (
    PROTONET_SCALE,
    FisherResult,
    default_candidate_layers,
    fisher_information,
    load_fisher,
)
from ttplan.planner.jsonio import load_json, save_json

LAYERS = ["0", "3", "7"]  # first conv, second conv, classifier


def tiny_model(inplace: bool = True) -> nn.Sequential:
    """Two convs (+BN, ReLU, pooling) and a linear head, weights drawn from a fixed generator."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3, stride=2),
        nn.ReLU(inplace=inplace),  # in place right after a probed conv: must not corrupt `a`
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    )
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for tensor in list(model.parameters()) + [model[1].running_mean]:
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.5)
        model[1].running_var.copy_(torch.rand(4, generator=generator) + 0.5)
    return model


def samples(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return synthetic_data(n, 3, (3, 8, 8), seed)


def reference_fisher(model: nn.Module, names, x, y, loss: str, seed: int = 0) -> dict[str, list[float]]:
    """Eq. 2 by hand: per sample, per channel, Σ_d a·g squared, averaged with 1/(2N)."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    modules = dict(model.named_modules())
    if loss == "protonet":
        with torch.no_grad():
            features = model(x).flatten(1)
        classes = sorted(set(y.tolist()))
        prototypes = torch.stack([features[y == c].mean(0) for c in classes])
        queries = augment(x, torch.Generator().manual_seed(seed))
        targets = torch.tensor([classes.index(v) for v in y.tolist()])
    else:
        queries, targets = x, y

    totals = {name: None for name in names}
    for n in range(len(x)):
        activations = {}
        handles = [
            modules[name].register_forward_hook(lambda m, i, o, name=name: activations.__setitem__(name, o))
            for name in names
        ]
        output = model(queries[n : n + 1])
        for handle in handles:
            handle.remove()
        if loss == "protonet":
            cosine = F.cosine_similarity(output.flatten(1)[:, None, :], prototypes[None], dim=-1)
            sample_loss = F.cross_entropy(PROTONET_SCALE * cosine, targets[n : n + 1])
        else:
            sample_loss = F.cross_entropy(output, targets[n : n + 1])
        grads = torch.autograd.grad(sample_loss, [activations[name] for name in names])
        for name, grad in zip(names, grads):
            a = activations[name].detach()
            channels = a.shape[1]
            if totals[name] is None:
                totals[name] = [0.0] * channels
            for o in range(channels):
                s = float((a[0, o] * grad[0, o]).sum())  # Σ_d a_nd g_nd over channel o's positions
                totals[name][o] += s * s
    return {name: [v / (2 * len(x)) for v in totals[name]] for name in names}


def assert_layers_close(actual: dict, expected: dict, rtol: float) -> None:
    assert list(actual) == list(expected)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=rtol, atol=1e-12, err_msg=name)


# ----------------------------------------------------------------------------- (a) Eq. 2 by hand


@pytest.mark.parametrize("loss", ["ce", "protonet"])
def test_matches_hand_computed_fisher(loss):
    model, (x, y) = tiny_model(), samples()
    result = fisher_information(model, LAYERS, x, y, loss=loss, seed=3)
    assert_layers_close(result.layers, reference_fisher(model, LAYERS, x, y, loss, seed=3), rtol=1e-5)
    assert result.num_samples == 6 and result.loss == loss and result.seed == 3
    for name, deltas in result.layers.items():
        assert all(isinstance(v, float) for v in deltas)
        assert result.potential[name] == pytest.approx(sum(deltas), rel=1e-12)
    assert len(result.layers["0"]) == 4 and len(result.layers["3"]) == 5 and len(result.layers["7"]) == 3
    assert result.time_s > 0 and result.peak_saved_bytes > 0


@pytest.mark.parametrize("loss", ["ce", "protonet"])
def test_batched_queries_give_the_per_query_definition(loss):
    model, (x, y) = tiny_model(), samples(7)
    one = fisher_information(model, LAYERS, x, y, loss=loss)
    batched = fisher_information(model, LAYERS, x, y, loss=loss, batch_size=3)
    assert_layers_close(batched.layers, one.layers, rtol=1e-4)


def test_auto_is_protonet():
    model, (x, y) = tiny_model(), samples()
    auto = fisher_information(model, LAYERS, x, y, loss="auto")
    assert auto.loss == "protonet"
    assert auto.layers == fisher_information(model, LAYERS, x, y).layers


# ----------------------------------------------------------------------------- (b) closed form


def test_closed_form_linear_with_sum_loss():
    # y = Wx + b with L = Σ y: g = 1 everywhere, so Δ_o = 1/(2N) Σ_n (Σ_d a_nd)².
    model = nn.Sequential(nn.Linear(4, 3))
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(5, 2, 4, generator=generator)  # N × T × features: D = the T=2 tokens
    y = torch.zeros(5, dtype=torch.int64)
    result = fisher_information(model, ["0"], x, y, loss=lambda out, labels: out.sum())
    a = model(x).detach()
    expected = []
    for o in range(3):
        total = 0.0
        for n in range(5):
            s = sum(float(a[n, t, o]) for t in range(2))
            total += s * s
        expected.append(total / (2 * 5))
    np.testing.assert_allclose(result.layers["0"], expected, rtol=1e-5)
    assert result.loss == "custom"

    flat = fisher_information(model, ["0"], x[:, 0], y, loss=lambda out, labels: out.sum(), batch_size=2)
    a0 = model(x[:, 0]).detach()
    np.testing.assert_allclose(flat.layers["0"], (a0.double() ** 2).sum(0).numpy() / 10, rtol=1e-5)


# ----------------------------------------------------------------------------- (c) determinism


def test_bit_identical_runs_and_seed_matters_for_protonet():
    model, (x, y) = tiny_model(), samples()
    first = fisher_information(model, LAYERS, x, y, seed=5)
    second = fisher_information(model, LAYERS, x, y, seed=5)
    assert first.layers == second.layers and first.potential == second.potential
    other = fisher_information(model, LAYERS, x, y, seed=6)
    assert other.layers != first.layers  # another augmentation of the pseudo-queries
    ce = [fisher_information(model, LAYERS, x, y, loss="ce", seed=s).layers for s in (5, 6)]
    assert ce[0] == ce[1]  # no augmentation: the seed is irrelevant


def test_augment_is_reproducible_from_the_generator():
    x, _ = samples()
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    c = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)


# ----------------------------------------------------------------------------- (d) model untouched


def test_model_state_is_restored():
    model, (x, y) = tiny_model(), samples()
    model.train()
    model[3].bias.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    before = copy.deepcopy(model.state_dict())
    fisher_information(model, LAYERS, x, y, batch_size=2)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(m.training for m in model.modules())
    assert model[4].inplace is True
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BN running stats


def test_nothing_below_the_earliest_candidate_is_kept():
    model, (x, y) = tiny_model(), samples()
    head_only = fisher_information(model, ["7"], x, y, loss="ce")
    everything = fisher_information(model, LAYERS, x, y, loss="ce")
    first_activation_bytes = 4 * 8 * 8 * 4  # conv 0 output of one sample, fp32
    assert 0 < head_only.peak_saved_bytes < first_activation_bytes <= everything.peak_saved_bytes


def test_bad_layer_names_and_arguments():
    model, (x, y) = tiny_model(), samples()
    with pytest.raises(SpecError, match="no module named"):
        fisher_information(model, ["9"], x, y)
    with pytest.raises(SpecError, match="listed twice"):
        fisher_information(model, ["0", "0"], x, y)
    with pytest.raises(SpecError, match="unknown Fisher loss"):
        fisher_information(model, ["0"], x, y, loss="mse")
    with pytest.raises(SpecError, match="batch size"):
        fisher_information(model, ["0"], x, y, batch_size=0)


def test_default_candidates_keep_the_tail():
    model = nn.Sequential(*[nn.Conv2d(1, 1, 1) for _ in range(24)], nn.Flatten(), nn.Linear(1, 2))
    names = default_candidate_layers(model)
    assert len(names) == 11  # ceil(0.44 × 25) = 11, not 12 from 0.44·25 = 11.000000000000002
    assert names == [str(i) for i in range(14, 24)] + ["25"]
    assert default_candidate_layers(tiny_model(), tail_fraction=1.0) == LAYERS
    with pytest.raises(SpecError):
        default_candidate_layers(model, tail_fraction=0)


# ----------------------------------------------------------------------------- (e) data loading


def write_png(path, colour, size=(10, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "support"
    for i in range(3):
        write_png(root / "apple" / f"{i}.png", (255, 0, 0), size=(10 + i, 6))
    for i in range(2):
        write_png(root / "banana" / f"{i}.PNG", (0, 0, 255))
    (root / "banana" / "notes.txt").write_text("not an image")
    return root


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def test_folder_loading(image_folder):
    x, y, description = load_support(str(image_folder), (3, 8, 8), None, 0, False)
    assert x.shape == (5, 3, 8, 8) and x.dtype == torch.float32
    assert y.tolist() == [0, 0, 0, 1, 1] and y.dtype == torch.int64
    red = [(1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], -IMAGENET_MEAN[1] / IMAGENET_STD[1], -IMAGENET_MEAN[2] / IMAGENET_STD[2]]
    np.testing.assert_allclose(x[0].mean(dim=(1, 2)).numpy(), red, rtol=1e-5)
    assert "2 classes" in description

    again = load_support(str(image_folder), (1, 1, 8, 8), None, 0, False)[0]
    assert again.shape == (5, 1, 8, 8)

    subset_x, subset_y, _ = load_support(str(image_folder), (3, 8, 8), 3, 0, False)
    assert subset_y.tolist() == [0, 0, 1]  # round-robin: apple0, banana0, apple1
    assert torch.equal(subset_x, x[[0, 1, 3]])


def test_folder_errors(tmp_path, image_folder):
    cases = {
        "not found": str(tmp_path / "missing"),
        "no class sub-folders": str((tmp_path / "empty").resolve()),
    }
    (tmp_path / "empty").mkdir()
    for expected, source in cases.items():
        with pytest.raises(SpecError) as exc:
            load_support(source, (3, 8, 8), None, 0, False)
        assert expected in one_line(exc)

    single = tmp_path / "single"
    write_png(single / "only" / "a.png", (0, 255, 0))
    with pytest.raises(SpecError) as exc:
        load_support(str(single), (3, 8, 8), None, 0, False)
    assert "only one class" in one_line(exc)

    (image_folder / "banana" / "broken.png").write_bytes(b"definitely not a png")
    with pytest.raises(SpecError) as exc:
        load_support(str(image_folder), (3, 8, 8), None, 0, False)
    assert "cannot read image" in one_line(exc) and "broken.png" in str(exc.value)

    with pytest.raises(SpecError) as exc:
        load_support(None, (3, 8, 8), None, 0, False)
    one_line(exc)


def test_npz_loading(tmp_path):
    generator = np.random.default_rng(0)
    pixels = generator.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1])
    np.savez(tmp_path / "hwc.npz", x=pixels, y=labels)
    x, y, _ = load_support(str(tmp_path / "hwc.npz"), (3, 8, 8), None, 0, False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - mean) / std
    assert torch.allclose(x, expected, atol=1e-6) and y.tolist() == [0, 1, 0, 1]

    ready = generator.standard_normal((4, 3, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "chw.npz", x=ready, y=labels)
    x, _, _ = load_support(str(tmp_path / "chw.npz"), (3, 6, 6), 2, 0, False)
    assert torch.equal(x, torch.from_numpy(ready[[0, 1]]))  # floats are used as they are
    resized, _, _ = load_support(str(tmp_path / "chw.npz"), (3, 8, 8), None, 0, False)
    assert resized.shape == (4, 3, 8, 8)

    np.savez(tmp_path / "nolabels.npz", x=ready)
    np.savez(tmp_path / "short.npz", x=ready, y=labels[:3])
    for name, expected in [("nolabels.npz", "lacks"), ("short.npz", "samples")]:
        with pytest.raises(SpecError) as exc:
            load_support(str(tmp_path / name), (3, 6, 6), None, 0, False)
        assert expected in one_line(exc)


def test_synthetic_support_is_deterministic_and_separable():
    x, y, description = load_support(None, (3, 8, 8), 10, 4, True)
    again, _, _ = load_support(None, (3, 8, 8), 10, 4, True)
    other, _, _ = load_support(None, (3, 8, 8), 10, 5, True)
    assert x.shape == (10, 3, 8, 8) and torch.equal(x, again) and not torch.equal(x, other)
    assert sorted(y.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4] and "synthetic" in description
    # Learnable: class means are far apart relative to the unit noise of a class-mean estimate.
    big_x, big_y = synthetic_data(200, 2, (1, 8, 8), 0)
    gap = (big_x[big_y == 0].mean(0) - big_x[big_y == 1].mean(0)).norm()
    assert gap > 3
    with pytest.raises(SpecError):
        load_support("somewhere", (3, 8, 8), None, 0, True)


# ----------------------------------------------------------------------------- (f) JSON files


def probe_result() -> FisherResult:
    model, (x, y) = tiny_model(), samples(4)
    return fisher_information(model, LAYERS, x, y)


def test_json_round_trip_is_exact_and_deterministic(tmp_path):
    result = probe_result()
    path = tmp_path / "fisher.json"
    save_json(path, result.to_json_dict("tiny", "f" * 64))
    first = path.read_bytes()
    save_json(path, probe_result().to_json_dict("tiny", "f" * 64))  # a second probe run
    assert path.read_bytes() == first and first.endswith(b"\n")
    assert [p.name for p in tmp_path.iterdir()] == ["fisher.json"]  # no temp file left behind
    loaded = load_fisher(path, "f" * 64)
    assert loaded == result and list(loaded.layers) == LAYERS


def test_fisher_of_another_model_is_refused(tmp_path):
    path = tmp_path / "fisher.json"
    save_json(path, probe_result().to_json_dict("tiny", "abcdef0123456789" * 4))
    with pytest.raises(PolicyError) as exc:
        load_fisher(path, "0" * 64, expected_model="mcunet")
    message = one_line(exc)
    assert "measured on model tiny (fingerprint abcdef012345…), not on mcunet" in message


def test_malformed_fisher_files_are_refused(tmp_path):
    good = probe_result().to_json_dict("tiny", "fp")
    broken = [
        {**good, "format": "something-else"},
        {**good, "version": 1},  # written before the weights were recorded
        {k: v for k, v in good.items() if k != "seed"},
        {**good, "extra": 1},
        {**good, "layers": [{**good["layers"][0], "potential": 123.0}]},
        {**good, "layers": [{**good["layers"][0], "channel_fisher": [-1.0]}]},
        {**good, "num_samples": True},
        [],
    ]
    for d in broken:
        with pytest.raises(PolicyError) as exc:
            FisherResult.from_json_dict(d, "fp")
        one_line(exc)

    (tmp_path / "bad.json").write_text('{"format": ')
    (tmp_path / "nan.json").write_text('{"x": NaN}')
    for name in ("bad.json", "nan.json", "missing.json"):
        with pytest.raises(PolicyError) as exc:
            load_json(tmp_path / name, what="fisher")
        assert "fisher file" in one_line(exc)


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "fisher.json"
    save_json(path, {"a": 1.5})
    with pytest.raises(TypeError):
        save_json(path, {"a": {1, 2}})
    with pytest.raises(PolicyError, match="non-finite"):  # a user error, before any write
        save_json(path, {"a": math.nan})
    assert load_json(path) == {"a": 1.5}
    assert [p.name for p in tmp_path.iterdir()] == ["fisher.json"]
