"""Regenerate the shipped device log and the built-in calibrations from the paper's numbers.

    python devices/data/make_logs.py [--probe]

0. with --probe only: paper_fisher/MODEL.json, the synthetic Fisher probe of each paper model
   measured again on this machine (ttplan.devices.paper_logs explains why they are shipped);
1. device_logs.csv: paper_measurements.csv in the LOG_COLUMNS schema, with each configuration's
   cost columns from ttplan's cost model (ttplan.devices.paper_logs);
2. calibrations/pi-zero-2.json, calibrations/jetson-nano.json: the time/energy model fitted to
   those runs (ttplan.devices.builtin).
Tests check that both regenerate byte for byte.
"""

import argparse
from pathlib import Path

from ttplan.devices.builtin import builtin_calibration_texts
from ttplan.devices.paper_logs import PAPER_MODELS, paper_fisher_text, paper_log_text

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", action="store_true", help="measure the Fisher files again")
    if parser.parse_args().probe:
        for model in PAPER_MODELS:
            path = HERE / "paper_fisher" / f"{model}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(paper_fisher_text(model), encoding="utf-8")
            print(f"wrote {path}")
    log_text = paper_log_text()
    (HERE / "device_logs.csv").write_text(log_text, encoding="utf-8")
    print(f"wrote {HERE / 'device_logs.csv'}")
    for name, text in builtin_calibration_texts(log_text).items():
        path = HERE / "calibrations" / f"{name}.json"
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
