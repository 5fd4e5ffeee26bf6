"""How much of a network the Fisher probe inspects by default.

A module of its own, importing nothing, so that `ttplan fisher --help` can show the default
without importing torch (planner.fisher.probe re-exports it).
"""

# Appendix F.1: inspecting the last 30-44% of the layers suffices for SOTA accuracy.
DEFAULT_TAIL_FRACTION = 0.44
