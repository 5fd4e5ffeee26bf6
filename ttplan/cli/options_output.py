"""Options of what a command writes: `--format` (the formats each command offers, each
declared once), `--out`, `--wide`, figures and logs (`options` says how options are
declared)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .options import OutputFormat, Progress, format_option, group

Out = Annotated[Optional[str], typer.Option(
    help="write to this file instead of stdout (a symlink is followed; /dev/null, a terminal "
         "or a FIFO is written through; a directory, a hard-linked, read-only or input file "
         "is refused)")]
Wide = Annotated[bool, typer.Option(
    "--wide", help="the whole table with exact values, however wide (default: fit $COLUMNS, "
    "else 100 columns, in human units)")]
# --format: the formats each command offers, each declared once.
_F = OutputFormat
TableFormat = Annotated[str, format_option(_F.TABLE, _F.JSON, _F.CSV)]
ProfileFormat = Annotated[str, format_option(_F.TABLE, _F.JSON, _F.CSV, _F.MD)]
PlanFormat = Annotated[str, format_option(_F.TABLE, _F.JSON, note="(on stdout)")]
ExportFormat = Annotated[str, format_option(_F.SPARSEUPDATE)]
# Default None: from --out's suffix (`reports._format`).
_BY_SUFFIX = "(default: from --out's suffix, else table)"
Table2Format = Annotated[Optional[str], format_option(_F.TABLE, _F.MD, _F.CSV, _F.JSON,
                                                      _F.LATEX, note=_BY_SUFFIX)]
ReportTableFormat = Annotated[Optional[str], format_option(_F.TABLE, _F.CSV, _F.JSON,
                                                           note=_BY_SUFFIX)]
ReportFormat = Annotated[str, format_option(
    _F.HTML, _F.MD, note="(html: one file; md: a folder, with each figure as PNG, SVG and "
    "PDF)")]


@group
class FormatOutput:
    """--format table|json|csv, --out (predict)."""
    fmt: TableFormat = "table"
    out: Out = None


@group
class TableOutput(FormatOutput):
    """--format table|json|csv, --out, --wide."""
    wide: Wide = False


@group
class ProfileOutput(TableOutput):
    fmt: ProfileFormat = "table"


@group
class TrainOutput:
    log: Annotated[Optional[str], typer.Option(help="append one row to this CSV log")] = None
    fmt: TableFormat = "table"
    out: Out = None


@group
class PlanOutput:
    out: Out = None
    fmt: PlanFormat = "table"


@group
class WhatifOutput:
    plot: Annotated[Optional[str], typer.Option(
        help="heat maps of captured Fisher, and of predicted time with --device (.png, .svg "
        "or .pdf)")] = None
    pareto_plot: Annotated[Optional[str], typer.Option(
        help="Pareto frontier figure (.png, .svg or .pdf)")] = None
    fmt: ReportTableFormat = None
    out: Out = None
    progress: Progress = None


@group
class ReportTableOutput:
    """--format from --out's suffix by default, --wide, --out (layers)."""
    fmt: ReportTableFormat = None
    wide: Wide = False
    out: Out = None


@group
class Table2Output(ReportTableOutput):
    fmt: Table2Format = None


@group
class ReportOutput:
    out: Annotated[str, typer.Option(help="the HTML file, or the folder for md")]
    fmt: ReportFormat = "html"
