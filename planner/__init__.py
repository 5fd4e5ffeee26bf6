"""planner: which layers and channels to train under a budget, and the policy that says so.

`api` (`plan`: one model, one budget, one policy), `context` (`PlanningContext`: one model traced
and scored once, planned for many budgets), `jsonio` (the deterministic JSON files), and four
subpackages: `fisher` (the Fisher probe, its losses, the Fisher file), `support` (the support
set's sources), `selection` (Eq. 3, the greedy, the MILP, the baselines), `policy` (the policy
file, applying it to a model, its profile). `probe_defaults` imports nothing, for --help.
"""
