"""The `ttplan` command: thin Typer commands over the Python API.

Every user error (`TtplanError`) and every usage error becomes one line on stderr and exit
status 2 (`common.OneLineErrors`, `common.run_safely`); output files are written through
`ttplan.io`, so a failed run leaves no half-written file. The commands import only the
public API (`ttplan`, `ttplan.specs`, `ttplan.io`, `ttplan.render`: tests/test_layers.py);
each command turns its options into request values, makes one call to a `ttplan` function
that does the whole job and renders its result (tests/test_cli_groups.py), and each option is
declared once (`options` and its subject modules `options_*`). Nothing imports this package: it sits above
every layer. The console script and `python -m ttplan` start in
`ttplan.__main__.main`, which imports this package under its Ctrl-C guard.
"""

from __future__ import annotations

import typer

from . import costs, devices_model, devices_train, planning, reports
from .common import OneLineErrors

app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True,
                  help="Exact costs of on-device training, and budgeted layer/channel plans.")


@app.callback()
def _commands() -> None:
    """Exact costs of on-device training, and budgeted layer/channel plans."""


for command in (costs.profile, planning.fisher, planning.plan, planning.export, costs.compare,
                costs.sweep, devices_model.devices, devices_model.calibrate, devices_model.predict,
                devices_model.validate, devices_train.train, devices_train.measure, reports.table2,
                reports.whatif, reports.layers, reports.report):
    app.command()(command)


def main() -> None:  # pragma: no cover - console entry point
    app()
