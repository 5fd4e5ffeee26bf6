"""The built-in calibrations: the time/energy model fitted to the paper's runs of each device
in the shipped log (`devices/data/make_logs.py` writes them; a test regenerates them)."""

from __future__ import annotations

from .calibrate import BUILTIN, calibrate, calibration_text
from .logs import parse_log
from .profiles import builtin_profiles

NOTES = {
    "pi-zero-2": ("fitted to the paper's Figure 5: end-to-end times are whole minutes as "
                  "printed on the bars (each up to +-30 s of rounding), energy in kJ to one "
                  "decimal",),
    "jetson-nano": ("fitted to the paper's Table 6 (total and Fisher seconds; no energy "
                    "measured)",),
}


def builtin_calibration_texts(log_text: str) -> dict[str, str]:
    """{device name: calibration JSON text} fitted to the shipped log's text."""
    log = parse_log(log_text, "device_logs.csv")
    profiles = builtin_profiles()
    return {name: calibration_text(calibrate(log, profiles[name], "device_logs.csv", NOTES[name]))
            for name in BUILTIN}
