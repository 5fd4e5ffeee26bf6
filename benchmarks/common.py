"""What the benchmark scripts share: timing and plain-text tables."""

import statistics
import time


def median_time(fn, repeats: int) -> float:
    """The median wall time of `repeats` calls of `fn`, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_header(header: str) -> None:
    """A table's header line and a rule under it."""
    print(header)
    print("-" * len(header))
