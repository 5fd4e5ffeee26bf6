"""The predicted peak resident memory of a training process (devices.process): the arithmetic
on small models, the device profile's runtime baseline, `fits_ram`, and the host probe once.
No assertion depends on this machine's memory figures (those are in
benchmarks/process_memory.py)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import ttplan
from ttplan.cli import app
from ttplan.costmodel.errors import SpecError
from ttplan.devices import process, runtime_probe
from ttplan.devices.planning import device_context, predict_training
from ttplan.devices.profiles import profile_from_dict, resolve_device
from ttplan.devices.runner import RunSettings, Support

MiB = 2**20
SHAPE = (1, 3, 16, 16)


def test_a_board_adds_its_runtime_and_the_support_set_to_the_step():
    pi = resolve_device("pi-zero-2")
    assert pi.runtime_bytes == 192 * MiB and pi.reserve_bytes == 64 * MiB
    assert pi.available_bytes == 256 * MiB  # what the shipped calibration was fitted against
    assert "not measured" in pi.sources["runtime_bytes"]
    got = process.process_memory(pi, 1000, 25, (3, 16, 16))
    assert got.support_bytes == 25 * 3 * 16 * 16 * 4
    assert got.peak_rss_bytes == 192 * MiB + round(process.DEFAULT_SUPPORT_COPIES
                                                   * got.support_bytes) + 1000
    assert process.process_memory(resolve_device("stm32f746"), 1000, 25, (3, 16, 16)) is None


def test_train_predicts_the_process_peak_from_the_host_runtime():
    result = ttplan.train("mcunet-5fps", update="last-blocks:1", inputs=(1, 3, 32, 32),
                          support=Support(synthetic=True, samples=6, holdout=0),
                          run=RunSettings(iterations=1))
    p = result.predicted
    parts = p["process_memory"]
    assert parts["runtime_bytes"] == 400 * MiB and parts["support_copies"] == 5.0  # conftest
    assert parts["training_bytes"] == p["peak_bytes"]  # weights, grads, optimiser, activations
    assert parts["support_bytes"] == 6 * 3 * 32 * 32 * 4
    assert p["peak_rss_bytes"] == 400 * MiB + 5 * parts["support_bytes"] + p["peak_bytes"]
    assert result.measured["peak_rss_bytes"] > 0


def test_predict_reports_the_process_peak_and_fits_ram_uses_it(tmp_path):
    got = predict_training("mcunet-5fps", "last-blocks:1",
                           device_context("pi-zero-2", samples=25), inputs=(1, 3, 64, 64))
    parts = got["process_memory"]
    assert got["peak_rss_bytes"] == parts["peak_rss_bytes"] == (
        192 * MiB + round(process.DEFAULT_SUPPORT_COPIES * 25 * 3 * 64 * 64 * 4)
        + got["peak_bytes"])
    assert got["fits_ram"] is True
    # A board whose tensors would fit but whose process does not: fits_ram says no.
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"format": "ttplan-device", "version": 1, "name": "small",
                                 "ram_bytes": "300MiB", "reserve_bytes": "64MiB",
                                 "runtime_bytes": "230MiB"}))
    profile = resolve_device(str(small))
    cost = ttplan.devices.stepcost.step_cost("mcunet-5fps", "last-blocks:1", (1, 3, 64, 64))
    assert cost.peak_bytes_pytorch < profile.available_bytes + 64 * MiB
    from ttplan.devices.planning import DeviceContext, prediction
    out = prediction(DeviceContext(profile, None), "custom", cost, sample_shape=(3, 64, 64))
    assert out["peak_rss_bytes"] > profile.process_ram_bytes and out["fits_ram"] is False


def test_predict_cli_json_has_the_process_peak():
    result = CliRunner().invoke(app, ["predict", "mcunet-5fps", "--update", "last-blocks:1",
                                      "--device", "pi-zero-2", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["peak_rss_bytes"] == data["process_memory"]["peak_rss_bytes"] > data["peak_bytes"]


def test_runtime_bytes_is_validated():
    with pytest.raises(SpecError, match="reserve_bytes \\+ runtime_bytes"):
        profile_from_dict({"name": "x", "ram_bytes": "1GiB", "reserve_bytes": "512MiB",
                           "runtime_bytes": "512MiB"}, "x.json", header=False)
    with pytest.raises(SpecError, match="runtime_bytes must be a positive number"):
        profile_from_dict({"name": "x", "ram_bytes": "1GiB", "runtime_bytes": "lots"},
                          "x.json", header=False)
    plain = profile_from_dict({"name": "x", "ram_bytes": "1GiB"}, "x.json", header=False)
    assert plain.runtime_bytes is None and "runtime_bytes" not in plain.to_dict()


def test_the_host_probe_measures_a_fresh_process():
    # The real probe (the conftest stands in for it elsewhere): one child process running
    # `ttplan train` on the negligible model; only that it answers is machine-independent.
    assert runtime_probe.run_probe(0) > 0


def test_the_host_runtime_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    measured = []

    def measure():
        measured.append(1)
        return 400 * MiB + len(measured), 5.5

    monkeypatch.setattr(runtime_probe, "measure_host_runtime", measure)
    path = tmp_path / "ttplan" / "host_runtime.json"
    assert runtime_probe.cache_path() == path
    assert runtime_probe.host_runtime() == (400 * MiB + 1, 5.5)
    assert runtime_probe.host_runtime() == (400 * MiB + 1, 5.5) and len(measured) == 1
    data = json.loads(path.read_text())
    assert data["format"] == "ttplan-host-runtime" and len(data["entries"]) == 1
    assert data["entries"][0]["key"] == runtime_probe.runtime_key()
    # another torch (or machine, or Python): measured again, both kept
    key = {**runtime_probe.runtime_key(), "torch": "0.0"}
    monkeypatch.setattr(runtime_probe, "runtime_key", lambda: key)
    assert runtime_probe.host_runtime() == (400 * MiB + 2, 5.5)
    assert len(json.loads(path.read_text())["entries"]) == 2
    assert runtime_probe.host_runtime(again=True) == (400 * MiB + 3, 5.5)  # --again
    assert len(json.loads(path.read_text())["entries"]) == 2


@pytest.mark.parametrize("text", ["{not json", "[]", '{"format": "ttplan-host-runtime", '
                                  '"version": 1, "entries": [{"key": {}, "runtime_bytes": -5, '
                                  '"support_copies": 1}]}'])
def test_a_corrupt_cache_is_ignored_with_a_warning_and_replaced(tmp_path, monkeypatch, text):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(runtime_probe, "measure_host_runtime", lambda: (300 * MiB, 4.0))
    path = runtime_probe.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.warns(UserWarning, match="ignoring the runtime-baseline cache"):
        assert runtime_probe.host_runtime() == (300 * MiB, 4.0)
    assert json.loads(path.read_text())["entries"][0]["runtime_bytes"] == 300 * MiB


def test_an_unwritable_cache_is_a_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # its ttplan/ cannot be made
    monkeypatch.setattr(runtime_probe, "measure_host_runtime", lambda: (300 * MiB, 4.0))
    with pytest.warns(UserWarning, match="cannot cache"):
        assert runtime_probe.host_runtime() == (300 * MiB, 4.0)


def test_a_failed_probe_leaves_the_prediction_out_with_a_warning(monkeypatch):
    def fails():
        raise SpecError("cannot measure this machine's runtime baseline: no output")
    monkeypatch.setattr(process, "measured_host_runtime", fails)
    host = resolve_device("host")
    with pytest.warns(UserWarning, match="runtime baseline"):
        assert process.process_memory(host, 1000, 4, (3, 8, 8)) is None
