"""ttplan: what on-device training costs, and what to update within a budget.

The public Python API. Everything the CLI does is a call to one of these:

    import ttplan
    prof = ttplan.profile("mcunet-5fps", update="last-blocks:4", convention="paper")
    prof.table          # pandas cost table, one row per operator
    prof.memory         # F1/F2/B1–B4 breakdown and peak, in bytes
    prof.to_dict()      # the documented JSON contract

    policy = ttplan.plan("mcunet-5fps", fisher=..., memory_bytes=1_000_000, compute=0.15)
    ttplan.apply_policy(model, policy)

Layers, each importing only those before it: `ttplan.costmodel` (tracing, cost rules, memory),
`ttplan.planner` (Fisher, selection, policies), `ttplan.devices`, `ttplan.reports`; the CLI
(`ttplan.cli`) sits on top and nothing imports it.
"""

from ttplan.costmodel.config import LayerUpdate, TrainConfig
from ttplan.costmodel.errors import TtplanError
from ttplan.costmodel.options import CostOptions
from ttplan.costmodel.profile import Profile
from ttplan.costmodel.rules import Grad, Rule, Saved, register_rule
from ttplan.costmodel.trace import trace
from ttplan.costmodel.zoo import ZOO_MODELS, build_zoo_model, load_model
from ttplan.planner.api import plan
from ttplan.planner.apply import apply_policy
from ttplan.planner.fisher import fisher_information
from ttplan.planner.policy import Policy, load_policy
from ttplan.planner.profiling import profile
from ttplan.devices.runner import train

__version__ = "0.1.0"

__all__ = ["LayerUpdate", "TrainConfig", "TtplanError", "CostOptions", "Profile", "profile",
           "Rule", "Saved", "Grad", "register_rule", "trace", "ZOO_MODELS", "build_zoo_model",
           "load_model", "plan", "apply_policy", "load_policy", "Policy", "fisher_information",
           "train"]
