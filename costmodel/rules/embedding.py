"""``nn.Embedding`` / ``F.embedding``: a table lookup, no MACs and no forward ops; its weight
gradient scatters one row per looked-up index, one add per output element."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from ..graph import OpNode
from .common import free
from .rule import Grad, Operator, Rule, Saved


def embedding_grad_ops(node: OpNode, g: Grad) -> int:
    return node.out_numel if g.weight else 0


def pt_embedding(node, g):
    # EmbeddingBackward0 keeps the indices (int64) for the weight gradient.
    return [Saved(("in", 0))] if g.weight and node.inputs else []


OPERATORS = (
    Operator("embedding", Rule(forward_other_ops=free, saved_pytorch=pt_embedding,
                               backward_other_ops=embedding_grad_ops),
             modules=(nn.Embedding,), functions=(F.embedding,)),
)
