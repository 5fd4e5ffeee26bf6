"""Plain-text tables for the benchmark scripts."""


def print_header(header: str) -> None:
    """A table's header line and a rule under it."""
    print(header)
    print("-" * len(header))
