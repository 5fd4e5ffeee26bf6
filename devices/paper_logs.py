"""The shipped device log: the paper's measurements in the LOG_COLUMNS schema.

`devices/data/paper_measurements.csv` holds the numbers as the paper prints them (Figure 5:
Pi Zero 2 minutes and kJ; Table 6: Jetson Nano Fisher and total seconds). This module turns
them into `devices/data/device_logs.csv`: energy in joules (kJ x 1000), 25 support samples,
methods as policies name them, and each configuration's cost columns from ttplan's cost model
for the configuration the paper ran:

  fulltrain     every layer, batch 100            lastlayer   the last conv layer, batch 1
  tinytl        the tinytl method's policy (lite residuals and biases), batch 100
  sparseupdate  the released scheme, unscaled (no memory budget), batch 1
  tinytrain     a tinytrain plan at the paper's 1 MB / 15 % budget (paper convention, SGD),
                with the Fisher information in `devices/data/paper_fisher/MODEL.json`, batch 1;
                its probe_macs are the synthetic probe's of 25 samples over the default
                candidate layers at 1x3x128x128 (devices.probecost), 0 for every other method

Run `python devices/data/make_logs.py` to regenerate; a test checks the result is the
shipped file byte for byte. The Fisher files are the synthetic probe's (25 samples, seed 0,
one thread), measured once and shipped: the probe sums float32 products, whose last bits
differ between CPUs (AVX2 or AVX-512 kernels), and a channel whose Fisher value ties another's
to six digits can then be chosen on one machine and not on the next. Planning from the
shipped files makes the log the same on every machine; `make_logs.py --probe` measures them
again, and a test checks this machine's probe agrees with them to 0.1 %.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from importlib import resources

from ttplan.costmodel.profile import resolve_model
from ttplan.costmodel.trace import trace
from ttplan.planner.api import PlanSearch, plan
from ttplan.planner.support.sources import load_support
from ttplan.planner.fisher import default_candidate_layers, fisher_information
from ttplan.planner.jsonio import dumps

from .logs import LOG_COLUMNS
from .probecost import run_probe_macs
from .stepcost import policy_fingerprint, policy_step_cost

PAPER_SAMPLES = 25
PAPER_MEMORY = "1MB"
PAPER_COMPUTE = "15%"
PROBE_SEED = 0
PAPER_MODELS = ("mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3")
METHOD_NAMES = {"FullTrain": "fulltrain", "LastLayer": "lastlayer", "TinyTL": "tinytl",
                "SparseUpdate": "sparseupdate", "TinyTrain": "tinytrain"}


def paper_measurements() -> list[dict]:
    source = resources.files("ttplan.devices").joinpath("data/paper_measurements.csv")
    text = source.read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def paper_fisher_text(model: str) -> str:
    """Measure the Fisher file of a paper model on this machine: the synthetic probe of 25
    samples, seed 0, at 1x3x128x128, ProtoNet loss (the probe runs on one thread itself)."""
    module, _ = resolve_model(model)
    shape = (1, 3, 128, 128)
    x, y, _ = load_support(None, shape, PAPER_SAMPLES, PROBE_SEED, True)
    result = fisher_information(module, default_candidate_layers(module), x, y,
                                loss="protonet", seed=PROBE_SEED)
    fingerprint = trace(module, shape, model_name=model).fingerprint()
    return dumps(result.to_json_dict(model, fingerprint))


def paper_probe_macs(model: str) -> int:
    """The MACs of the paper model's probe (module docstring)."""
    module, _ = resolve_model(model)
    return run_probe_macs(module, (1, 3, 128, 128), PAPER_SAMPLES)


def paper_policy(model: str, method: str, batch_size: int):
    """The policy that stands for the paper's configuration (module docstring)."""
    shape = (batch_size, 3, 128, 128)
    if method == "tinytrain":
        fisher = resources.files("ttplan.devices").joinpath(f"data/paper_fisher/{model}.json")
        with resources.as_file(fisher) as path:
            return plan(model, method="tinytrain", fisher=path,
                        memory_bytes=PAPER_MEMORY, compute=PAPER_COMPUTE, inputs=shape)
    if method == "sparseupdate":
        return plan(model, method="sparseupdate", search=PlanSearch(scheme="released"),
                    inputs=shape)
    return plan(model, method=method, inputs=shape)


def paper_log_text() -> str:
    """The content of devices/data/device_logs.csv."""
    rows = _rows()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _rows() -> list[dict]:
    costs, out = {}, []
    for m in paper_measurements():
        method = METHOD_NAMES[m["method"]]
        batch = int(m["batch_size"])
        key = (m["model"], method, batch)
        if key not in costs:
            policy = paper_policy(m["model"], method, batch)
            costs[key] = (policy_fingerprint(policy), policy_step_cost(policy).columns(),
                          paper_probe_macs(m["model"]) if method == "tinytrain" else 0)
        fingerprint, columns, probe_macs = costs[key]
        energy = m["energy_kj"].strip()
        out.append({
            "device": m["device"], "model": m["model"], "method": method,
            "policy": fingerprint, "batch_size": batch, "iterations": int(m["iterations"]),
            "samples": PAPER_SAMPLES, "fisher_s": m["fisher_s"].strip(),
            "total_s": m["total_s"].strip(),
            "energy_j": _plain(Decimal(energy) * 1000) if energy else "",
            **columns, "probe_macs": probe_macs, "source": f"paper {m['source']}",
        })
    return out


def _plain(value: Decimal) -> str:
    """4.4 kJ -> '4400' (exact decimal arithmetic, no binary rounding)."""
    text = format(value.normalize(), "f")
    return text
