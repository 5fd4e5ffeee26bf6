"""The device log: one schema (LOG_COLUMNS), the paper's runs in it, strict one-line errors."""

import math
from pathlib import Path

import pytest

from ttplan.costmodel.errors import SpecError
from ttplan.devices.logs import LOG_COLUMNS, append_log_row, load_device_logs

DATA = Path(__file__).resolve().parents[1] / "devices" / "data"


def test_builtin_logs():
    logs = load_device_logs()
    assert tuple(logs.columns) == LOG_COLUMNS and len(logs) == 21
    pi = logs[(logs.device == "pi-zero-2") & (logs.model == "mcunet-5fps")]
    assert dict(zip(pi.method, pi.total_s))["tinytrain"] == 540.0  # 9 minutes on Figure 5
    assert dict(zip(pi.method, pi.energy_j))["fulltrain"] == 4400.0  # 4.4 kJ
    assert set(logs.samples) == {25} and set(logs.iterations) == {40}
    nano = logs[logs.device == "jetson-nano"]
    assert set(nano.method) == {"sparseupdate", "tinytrain"}
    assert nano.energy_j.isna().all()
    tiny = nano[nano.method == "tinytrain"]
    assert dict(zip(tiny.model, tiny.fisher_s))["mcunet-5fps"] == 35.0
    # The paper's claim: TinyTrain is 1.3-1.7x faster than SparseUpdate on Jetson Nano.
    by = nano.pivot(index="model", columns="method", values="total_s")
    speedups = (by.sparseupdate / by.tinytrain).round(1)
    assert speedups.min() == 1.3 and speedups.max() == 1.7


def test_cost_columns_are_the_configurations():
    logs = load_device_logs()
    row = logs[(logs.device == "pi-zero-2") & (logs.model == "mcunet-5fps")].set_index("method")
    # FullTrain at batch 100: 100 x the forward MACs, backward = 2 x forward - the stem's MACs.
    assert row.loc["fulltrain", "forward_macs"] == 100 * 22_453_504
    assert row.loc["fulltrain", "backward_input_macs"] + row.loc["fulltrain", "backward_weight_macs"] \
        == 100 * 43_137_536
    assert row.loc["fulltrain", "updated_tensors"] == 84  # 42 convs x (weight, folded bias)
    # The paper's point: batch-100 runs do not fit a Pi Zero 2's 512 MB under PyTorch.
    assert row.loc["fulltrain", "peak_bytes_pytorch"] > 512 * 2**20
    assert row.loc["tinytrain", "peak_bytes_paper"] <= 1_000_000  # planned at 1 MB
    assert row.loc["lastlayer", "backward_input_macs"] == 0
    # Same configuration on both devices: same cost columns and policy fingerprint.
    nano = logs[(logs.device == "jetson-nano") & (logs.model == "mcunet-5fps")].set_index("method")
    for column in ("policy", "forward_macs", "backward_weight_macs", "peak_bytes_pytorch"):
        assert nano.loc["tinytrain", column] == row.loc["tinytrain", column]


def test_regenerating_the_log_gives_the_same_file(one_thread):
    from ttplan.devices.paper_logs import paper_log_text
    assert paper_log_text() == (DATA / "device_logs.csv").read_text()


def test_shipped_paper_fisher_is_this_machines_probe():
    """The log plans from shipped Fisher files (so it is the same on every CPU); the probe
    measured here agrees with them to 0.1 % per channel (float32 sums differ in the last bits)."""
    import json
    from regression.outputs import check_fisher_agrees
    from ttplan.devices.paper_logs import paper_fisher_text
    shipped = DATA / "paper_fisher" / "mcunet-5fps.json"
    check_fisher_agrees(json.loads(paper_fisher_text("mcunet-5fps")),
                        json.loads(shipped.read_text()), str(shipped))


def test_append_then_load(tmp_path):
    path = tmp_path / "runs.csv"
    row = dict(zip(LOG_COLUMNS, [""] * len(LOG_COLUMNS)))
    row.update(device="my-pi", model="mcunet-5fps", method="TinyTrain", batch_size=1,
               iterations=40, samples=25, fisher_s=30.5, total_s=600, forward_macs=1,
               backward_input_macs=2, backward_weight_macs=3, updated_tensors=4,
               peak_bytes_paper=5, peak_bytes_pytorch=6, depthwise_forward_macs=0,
               depthwise_backward_input_macs=0, depthwise_backward_weight_macs=1, forward_operators=7,
               forward_elements=8, backward_operators=2, backward_elements=3,
               probe_macs=50_000_000, threads=1)
    append_log_row(path, row)
    append_log_row(path, row)
    logs = load_device_logs(path)
    assert len(logs) == 2 and logs.method.iloc[0] == "tinytrain"
    assert logs.fisher_s.iloc[0] == 30.5 and math.isnan(logs.load_s.iloc[0])
    assert logs.probe_macs.iloc[0] == 50_000_000


HEADER = ",".join(LOG_COLUMNS) + "\n"
GOOD = "pi,m,tinytrain,,1,40,25,,,,,600,,10,0,5,2,100,200,3,0,1,9,40,2,8,1000,,,,,x\n"


def _with(column: str, value: str) -> str:
    cells = GOOD.rstrip("\n").split(",")
    cells[LOG_COLUMNS.index(column)] = value
    return ",".join(cells) + "\n"


@pytest.mark.parametrize("body,needle", [
    ("device,model\nx,y\n", "line 1: missing column(s) method"),
    (HEADER.replace(",forward_operators,forward_elements", "") + GOOD,
     "missing column(s) forward_operators, forward_elements; a log written before"),
    (HEADER.replace(",probe_macs", "") + GOOD, "missing column(s) probe_macs; a log written "),
    (HEADER + _with("probe_macs", ""), "column probe_macs: is empty"),
    (HEADER.replace("source", "source,extra"), "line 1: unknown column(s) extra"),
    (HEADER + GOOD + _with("batch_size", "one"), "line 3, column batch_size: 'one' is not a whole number"),
    (HEADER + _with("total_s", ""), "line 2, column total_s: is empty"),
    (HEADER + _with("total_s", "-3"), "column total_s: '-3' must be a positive"),
    (HEADER + _with("energy_j", "nan"), "column energy_j: 'nan' must be a non-negative"),
    (HEADER + _with("samples", "0"), "column samples: must be positive"),
    (HEADER + _with("forward_macs", ""), "column forward_macs: is empty"),
    (HEADER + _with("depthwise_backward_weight_macs", ""), "column depthwise_backward_weight_macs: is empty"),
    (HEADER + _with("backward_operators", "2.5"), "column backward_operators: '2.5' is not a whole"),
    (HEADER + _with("device", ""), "column device: is empty"),
    (HEADER + _with("fisher_s", "700"), "column total_s: 600 s is less than the sum of its phases"),
    (HEADER + GOOD.replace(",x\n", ",x,y\n"), "line 2: 33 fields, expected 32"),
    ("", "no rows"),
    (HEADER, "no rows"),
])
def test_broken_logs(tmp_path, body, needle):
    path = tmp_path / "log.csv"
    path.write_text(body)
    with pytest.raises(SpecError) as err:
        load_device_logs(path)
    message = str(err.value)
    assert needle in message and "\n" not in message and str(path) in message
