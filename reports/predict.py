"""The one place a device model enters the reports.

A predictor is any callable `(totals, memory) -> {"time_s", "energy_j", "fits_ram"}` taking a
configuration's profile totals (`Profile.to_dict()["totals"]`) and memory breakdown
(`["memory"]`); the devices layer provides one per device. Without a predictor every
device-dependent field is None, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable

from ttplan.costmodel.errors import SpecError

Predictor = Callable[[dict, dict], dict]
DEVICE_FIELDS = ("time_s", "energy_j", "fits_ram")


def predict(predictor: Predictor | None, totals: dict, memory: dict) -> dict:
    """{time_s, energy_j, fits_ram} from the predictor, or all None without one."""
    if predictor is None:
        return dict.fromkeys(DEVICE_FIELDS)
    result = predictor(totals, memory)
    if not isinstance(result, dict) or not set(DEVICE_FIELDS) <= set(result):
        raise SpecError(f"a device predictor must return a dict with {', '.join(DEVICE_FIELDS)}")
    return {k: result[k] for k in DEVICE_FIELDS}
