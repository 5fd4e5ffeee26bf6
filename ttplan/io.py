"""Files: written whole or not at all, read with guards, in the formats ttplan documents.

Public API (`from ttplan.io import write_text_atomic`); names load on first use. What the
`ttplan` command writes goes through here, so a failed run never leaves half a file.

Writing
    write_text_atomic(path, text), write_bytes_atomic(path, data)
                           a temporary file beside `path`, renamed over it once complete
    check_output_target(path)
                           refuse a directory, a hard-linked, read-only or input file before
                           any work (a symlink is followed; /dev/null, a terminal, a FIFO are
                           written through)
    command_io()           context: records the files read inside it, so an output naming
                           one of them is refused
    command_line_models()  context: import paths (module:callable) given inside it may come
                           from the working directory, as a command line's do
    json_text(data)        ttplan's one JSON text of `data` (sorted keys, two-space indent, a
                           final newline; NaN and infinity refused)

Run logs and device tables
    LOG_COLUMNS            the columns of a device run log (CSV)
    check_log_target(path), append_log_row(path, row), load_device_logs(path=None)
    save_layer_table(path, table), load_layer_table(path)
                           `ttplan measure --layer-table` tables (JSON)
    load_calibration(path), calibration_text(calibration)
                           a device's calibration JSON
    load_fisher(path, graph)
                           a Fisher file from `ttplan fisher`
"""

from __future__ import annotations

from ttplan._lazy import lazy_exports

_EXPORTS = {
    "write_text_atomic": ("ttplan.costmodel.fileio", "write_text_atomic"),
    "write_bytes_atomic": ("ttplan.costmodel.fileio", "write_bytes_atomic"),
    "check_output_target": ("ttplan.costmodel.fileio", "check_output_target"),
    "command_io": ("ttplan.costmodel.fileio", "command_io"),
    "command_line_models": ("ttplan.costmodel.zoo", "command_line_models"),
    "json_text": ("ttplan.planner.jsonio", "dumps"),
    "LOG_COLUMNS": ("ttplan.devices.logs", "LOG_COLUMNS"),
    "check_log_target": ("ttplan.devices.logs", "check_log_target"),
    "append_log_row": ("ttplan.devices.logs", "append_log_row"),
    "load_device_logs": ("ttplan.devices.logs", "load_device_logs"),
    "save_layer_table": ("ttplan.devices.layerrun", "save_table"),
    "load_layer_table": ("ttplan.devices.layerrun", "load_table"),
    "load_calibration": ("ttplan.devices.calibrate", "load_calibration"),
    "calibration_text": ("ttplan.devices.calibrate", "calibration_text"),
    "load_fisher": ("ttplan.planner.fisher.file", "load_fisher"),
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
