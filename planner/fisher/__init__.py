"""The Fisher information on activations (paper Eq. 2), in three modules:

* `planner.fisher.probe`  — the probe: `fisher_information`, `default_candidate_layers`;
* `planner.fisher.losses` — the losses it differentiates (ProtoNet, cross-entropy);
* `planner.fisher.file`   — the Fisher file: `FisherResult`, `load_fisher`, `weights_digest`.

This module keeps their public names importable from one place.
"""

from .file import (FORMAT, MAX_FISHER_VALUE, VERSION, FisherResult, check_weights,
                   load_fisher, weights_digest)
from .losses import (LOSSES, PROTONET_SCALE, LossFn, class_prototypes,
                     protonet_criterion)
from .probe import DEFAULT_TAIL_FRACTION, default_candidate_layers, fisher_information

__all__ = ["FORMAT", "VERSION", "MAX_FISHER_VALUE", "FisherResult", "load_fisher",
           "check_weights", "weights_digest", "LOSSES", "PROTONET_SCALE", "LossFn", "class_prototypes", "protonet_criterion",
           "DEFAULT_TAIL_FRACTION", "default_candidate_layers", "fisher_information"]
