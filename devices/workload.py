"""The paper's on-device workload (§3.2): 40 passes over 25 support samples.

A module of its own, importing nothing, so that the commands' option defaults can show these
without importing torch or pandas (`ttplan predict --help` stays fast).
"""

DEFAULT_ITERATIONS = 40
DEFAULT_SAMPLES = 25
