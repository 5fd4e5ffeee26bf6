"""Policies: what a plan selects, written to and read from a file, applied to a model, costed.

`file` (the policy file: `Policy`, its schema, loading and checking against a model), `apply`
(make a torch model train exactly what a policy selects), `profile` (`ttplan.profile`: the
cost model's profile, with a policy as the update).
"""
