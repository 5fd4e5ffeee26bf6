"""Figures that are the same bytes for the same data.

matplotlib draws with the non-interactive Agg backend and a fixed style (rcParams set here, not
read from the user's matplotlibrc); PNGs are saved without the "Software" metadata entry and
SVGs without a date or a random id salt, so two runs give identical files.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from ttplan.costmodel.errors import SpecError  # noqa: E402

FIGURE_FORMATS = ("png", "svg")
DPI = 100

_STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "svg.hashsalt": "ttplan",
    "svg.fonttype": "path",
    "path.simplify": True,
    "image.cmap": "viridis",
}


def new_figure(width_in: float = 6.4, height_in: float = 4.0, ncols: int = 1, nrows: int = 1):
    """(figure, axes) in the fixed style; close it with `figure_bytes` or `plt.close`."""
    with matplotlib.rc_context(_STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width_in, height_in), squeeze=False)
    return fig, axes


def figure_bytes(fig, fmt: str = "png") -> bytes:
    """The figure encoded deterministically; the figure is closed."""
    if fmt not in FIGURE_FORMATS:
        raise SpecError(f"unknown figure format {fmt!r}: use png or svg")
    metadata = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    buffer = io.BytesIO()
    try:
        with matplotlib.rc_context(_STYLE):
            fig.savefig(buffer, format=fmt, metadata=metadata)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def format_of(path: str) -> str:
    """png or svg, from a file name; anything else is a one-line error."""
    suffix = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else ""
    if suffix not in FIGURE_FORMATS:
        raise SpecError(f"cannot tell the figure format of {path!r}: name it .png or .svg")
    return suffix


def styled(fn):
    """Run a drawing function inside the fixed style (fonts, grid) so text sizes match."""
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_STYLE):
            return fn(*args, **kwargs)
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def percent_label(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def mib(n_bytes: float) -> float:
    return n_bytes / 2**20
