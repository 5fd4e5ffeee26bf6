"""Which layers and channels to update under a budget.

`score` (Eq. 3 and the candidate layers), `select` (budgets, costing a configuration, the greedy
of Algorithm 1), `exact` (the MILP), `baselines` (none, fulltrain, lastlayer, tinytl, last-K),
`sparseupdate` (SparseUpdate's schemes and export), `tinytl` (TinyTL's lite-residual modules).
"""
