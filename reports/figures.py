"""Figures that are the same bytes for the same data.

matplotlib draws with the non-interactive Agg backend and a fixed style (rcParams set here, not
read from the user's matplotlibrc); PNGs are saved without the "Software" metadata entry, SVGs
without a date or a random id salt and PDFs without a creation date or producer, so two runs
give identical files.

Figures are drawn at the size they are printed: TEXT_WIDTH_IN (a two-column paper's text
width, `figure*`) or COLUMN_WIDTH_IN (one column), with no text below MIN_FONT_PT, so a figure
pasted into a paper at its own width reads as it does here. SVG and PDF are vector files.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from ttplan.costmodel.errors import SpecError  # noqa: E402

FIGURE_FORMATS = ("png", "svg", "pdf")
VECTOR_FORMATS = ("svg", "pdf")
DPI = 150
TEXT_WIDTH_IN = 7.0
COLUMN_WIDTH_IN = 3.4
MIN_FONT_PT = 7.5

_STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
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
        raise SpecError(f"unknown figure format {fmt!r}: use png, svg or pdf")
    metadata = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
                "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}[fmt]
    buffer = io.BytesIO()
    try:
        with matplotlib.rc_context(_STYLE):
            fig.savefig(buffer, format=fmt, metadata=metadata)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def format_of(path: str) -> str:
    """png, svg or pdf, from a file name; anything else is a one-line error."""
    suffix = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else ""
    if suffix not in FIGURE_FORMATS:
        raise SpecError(f"cannot tell the figure format of {path!r}: name it .png, .svg or .pdf")
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
