"""Quantities for people: the one way every table and summary line writes bytes, MACs and
durations (JSON and CSV keep exact integers and seconds).

Bytes are binary (KiB, MiB, GiB: powers of 1024), as the profile's memory breakdown and the
paper-comparison columns have always been; `parse_bytes` reads both these and kB/MB/GB. MACs
take decimal prefixes (k, M, G: powers of 1000), as the paper writes them ("6.51M"). Durations
go from ms through s, min and h. Each is written with three or four significant digits.
"""

from __future__ import annotations

import math


def human_bytes(n) -> str:
    """1,876,896 -> '1.79 MiB'; 640 * 1024 -> '640.0 KiB'; 0 -> '0 B'."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    n = int(n)
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{_digits(n / size)} {unit}"
    return f"{n} B"


def human_macs(n) -> str:
    """43,137,536 -> '43.14M'; 589,824 -> '589.8k'; 12 -> '12'."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    n = int(n)
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if abs(n) >= size:
            return f"{_digits(n / size)}{unit}"
    return str(n)


def human_seconds(s) -> str:
    """0.0123 -> '12.3 ms'; 464.2 -> '7.74 min'; 7200 -> '2.00 h'; 0 -> '0 s'."""
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    s = float(s)
    if s == 0:
        return "0 s"
    if abs(s) < 1:
        return f"{_digits(s * 1000)} ms"
    if abs(s) < 120:
        return f"{_digits(s)} s"
    if abs(s) < 7200:
        return f"{_digits(s / 60)} min"
    return f"{_digits(s / 3600)} h"


def human_hertz(hz) -> str:
    """1,430,000,000 -> '1.43 GHz'."""
    if hz is None or (isinstance(hz, float) and math.isnan(hz)):
        return "-"
    for unit, size in (("GHz", 10**9), ("MHz", 10**6), ("kHz", 10**3)):
        if hz >= size:
            return f"{_digits(hz / size)} {unit}"
    return f"{hz:g} Hz"


def human_joules(j) -> str:
    """951.04 -> '951.0 J'; 4,400 -> '4.40 kJ'; 2.5e6 -> '2.50 MJ'."""
    if j is None or (isinstance(j, float) and math.isnan(j)):
        return "-"
    for unit, size in (("MJ", 10**6), ("kJ", 10**3)):
        if abs(j) >= size:
            return f"{_digits(j / size)} {unit}"
    return f"{_digits(j)} J"


def percent(fraction) -> str:
    """0.8051 -> '80.51%' (a share, e.g. of the Fisher potential; as the report writes it)."""
    if fraction is None:
        return "-"
    return f"{100 * fraction:.2f}%"


def _digits(x: float) -> str:
    # three significant digits, four below 1000 would read as a count: 1.79, 85.5, 640.0
    a = abs(x)
    return f"{x:.2f}" if a < 10 else f"{x:.1f}" if a < 1000 else f"{x:,.0f}"
