"""The measured device logs load, and a broken log is a one-line error."""

import math

import pytest

from ttplan.costmodel.errors import SpecError
from ttplan.devices.logs import load_device_logs


def test_builtin_logs():
    logs = load_device_logs()
    assert len(logs) == 21
    pi = logs[(logs.device == "pi-zero-2") & (logs.model == "mcunet-5fps")]
    assert dict(zip(pi.method, pi.total_s))["TinyTrain"] == 540.0  # 9 minutes on Figure 5
    nano = logs[logs.device == "jetson-nano"]
    assert set(nano.method) == {"SparseUpdate", "TinyTrain"}
    assert math.isnan(nano.energy_kj.iloc[0])
    # The paper's claim: TinyTrain is 1.3-1.7x faster than SparseUpdate on Jetson Nano.
    by = nano.pivot(index="model", columns="method", values="total_s")
    speedups = (by.SparseUpdate / by.TinyTrain).round(1)
    assert speedups.min() == 1.3 and speedups.max() == 1.7


@pytest.mark.parametrize("body,needle", [
    ("device,model\nx,y\n", "lacks column"),
    ("device,model,method,batch_size,iterations,fisher_s,total_s,energy_kj,source\n"
     "pi,m,TinyTrain,one,40,,5,1,x\n", "batch_size 'one' is not a number"),
    ("device,model,method,batch_size,iterations,fisher_s,total_s,energy_kj,source\n"
     "pi,m,TinyTrain,1,40,,,1,x\n", "total_s is empty"),
    ("device,model,method,batch_size,iterations,fisher_s,total_s,energy_kj,source\n"
     "pi,m,TinyTrain,1,40,,-3,1,x\n", "non-negative"),
    ("", "no rows"),
])
def test_broken_logs(tmp_path, body, needle):
    path = tmp_path / "log.csv"
    path.write_text(body)
    with pytest.raises(SpecError) as err:
        load_device_logs(path)
    assert needle in str(err.value) and "\n" not in str(err.value)
