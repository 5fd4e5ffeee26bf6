"""ttplan: what on-device training costs, and what to update within a budget.

The public Python API. Everything the CLI does is a call to one of these:

    import ttplan
    prof = ttplan.profile("mcunet-5fps", update="last-blocks:4", convention="paper")
    prof.table          # pandas cost table, one row per operator
    prof.memory         # F1/F2/B1–B4 breakdown and peak, in bytes
    prof.to_dict()      # the documented JSON contract

    policy = ttplan.plan("mcunet-5fps", fisher=..., memory_bytes=1_000_000, compute=0.15)
    ttplan.apply_policy(model, policy)
"""

from ttplan.costmodel.config import LayerUpdate, TrainConfig
from ttplan.costmodel.errors import TtplanError
from ttplan.costmodel.profile import Profile, profile
from ttplan.costmodel.trace import trace
from ttplan.costmodel.zoo import ZOO_MODELS, build_zoo_model, load_model

__version__ = "0.1.0"


def plan(*args, **kwargs):
    """Budgeted layer/channel selection; see `planner.api.plan`."""
    from ttplan.planner.api import plan as _plan

    return _plan(*args, **kwargs)


def apply_policy(model, policy):
    """Make `model` train exactly what `policy` selects; see `planner.apply.apply_policy`."""
    from ttplan.planner.apply import apply_policy as _apply

    return _apply(model, policy)


def load_policy(path):
    """Read and strictly validate a policy file; see `planner.policy`."""
    from ttplan.planner.policy import load_policy as _load

    return _load(path)


def fisher_information(*args, **kwargs):
    """Fisher potential of candidate layers on the user's samples (paper Eq. 2)."""
    from ttplan.planner.fisher import fisher_information as _fisher

    return _fisher(*args, **kwargs)


__all__ = ["LayerUpdate", "TrainConfig", "TtplanError", "Profile", "profile", "trace",
           "ZOO_MODELS", "build_zoo_model", "load_model", "plan", "apply_policy",
           "load_policy", "fisher_information"]
