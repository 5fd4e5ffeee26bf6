"""Results into text and figures: tables that fit a terminal, CSV, JSON, Markdown, HTML.

Public API (`from ttplan.render import render_rows`); names load on first use (the figures
import matplotlib, the tables nothing heavy). Every `render_*` returns text, every `plot_*`
the bytes of a figure (`figure_format(path)` picks PNG, SVG or PDF from a file name), so the
caller decides where they go (`ttplan.io.write_text_atomic`).

Tables
    render(data, fmt, width, wide)         a profile's `to_dict()` as table | json | csv | md
    render_rows(rows, fields, fmt, width, wide, ...)
                                           rows of dicts as table | json | csv (| md)
    fit_table(heads, rows, ...), wrap_lines(lines, width, indent)
                                           fit text to `width` columns
    FORMATS, DEFAULT_WIDTH                 a profile's formats; the width without $COLUMNS
    human_bytes, human_macs, human_seconds, human_joules, percent
                                           quantities for people (1.2 MiB, 6.5 M, 3.4 s)
    uncosted_warnings(graph)               one line per kind of operator without a cost rule

Fields of the row reports (the columns of their CSV and JSON)
    SWEEP_FIELDS, COMPARE_FIELDS, COMPARE_DEVICE_FIELDS, VALIDATION_FIELDS

Reports
    render_table2(data, fmt, width, wide), plot_table2(rows, fmt)      the paper's Table 2
    render_whatif(data, fmt), plot_heatmaps(data, fmt), plot_pareto(data, fmt)
    render_layers(rows, fmt, width), plot_layers(rows, title, fmt)    per-layer cost and value
    render_html(report), write_markdown(report, folder)               `ttplan report`
    plot_validation(result, path)          predicted against measured runs (a PNG file)
    figure_format(path)                    png | svg | pdf from a file name
"""

from __future__ import annotations

from ttplan._lazy import lazy_exports

_EXPORTS = {
    "render": ("ttplan.reports.render", "render"),
    "render_rows": ("ttplan.reports.render", "render_rows"),
    "fit_table": ("ttplan.reports.render", "fit_table"),
    "wrap_lines": ("ttplan.reports.render", "wrap_lines"),
    "FORMATS": ("ttplan.reports.render", "FORMATS"),
    "DEFAULT_WIDTH": ("ttplan.reports.render", "DEFAULT_WIDTH"),
    "human_bytes": ("ttplan.costmodel.units", "human_bytes"),
    "human_macs": ("ttplan.costmodel.units", "human_macs"),
    "human_seconds": ("ttplan.costmodel.units", "human_seconds"),
    "human_joules": ("ttplan.costmodel.units", "human_joules"),
    "percent": ("ttplan.costmodel.units", "percent"),
    "uncosted_warnings": ("ttplan.costmodel.costs", "unknown_op_warnings"),
    "SWEEP_FIELDS": ("ttplan.reports.sweep", "SWEEP_FIELDS"),
    "COMPARE_FIELDS": ("ttplan.reports.compare", "COMPARE_FIELDS"),
    "COMPARE_DEVICE_FIELDS": ("ttplan.reports.compare", "DEVICE_FIELDS"),
    "VALIDATION_FIELDS": ("ttplan.devices.validate", "ROW_FIELDS"),
    "render_table2": ("ttplan.reports.table2", "render_table2"),
    "plot_table2": ("ttplan.reports.table2", "plot_table2"),
    "render_whatif": ("ttplan.reports.whatif", "render_whatif"),
    "plot_heatmaps": ("ttplan.reports.whatif", "plot_heatmaps"),
    "plot_pareto": ("ttplan.reports.whatif", "plot_pareto"),
    "render_layers": ("ttplan.reports.layers", "render_layers"),
    "plot_layers": ("ttplan.reports.layers", "plot_layers"),
    "render_html": ("ttplan.reports.report", "render_html"),
    "write_markdown": ("ttplan.reports.report", "write_markdown"),
    "plot_validation": ("ttplan.devices.validate", "plot_validation"),
    "figure_format": ("ttplan.reports.figures", "format_of"),
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
