"""Activation checkpointing (``torch.utils.checkpoint``) seen while a model is traced.

A checkpointed call keeps none of what its operators would save: autograd keeps the call's
tensor arguments, and the backward runs the call's forward again to get the rest back, one
region at a time (measured on 2.13: notes/pytorch_saved_tensors.md). The tracer marks each
operator run inside such a call with the region's number (``attrs["checkpoint"]``, and
``attrs["checkpoint_reentrant"]`` for the reentrant variant, an autograd Function whose output
needs a gradient only when one of its tensor arguments does: without one, the parameters inside
get none, `config.node_grads`). The memory model keeps a region's inputs instead of its saved
tensors and holds those for the region's backward only.

Both variants go through two names `torch.utils.checkpoint.checkpoint` looks up when it is
called (so a model that imported `checkpoint` by name is seen too): the generator around a
non-reentrant call and the autograd Function of a reentrant one. `marked_regions` wraps them
for the length of a trace.
"""

from __future__ import annotations

import contextlib

import torch.utils.checkpoint as torch_checkpoint


class CheckpointRegions:
    """The checkpointed calls of one trace: how many began, and which one runs now."""

    def __init__(self):
        self.count = 0
        self._open: list[int] = []
        self.reentrant: set[int] = set()  # regions of reentrant calls

    @property
    def current(self) -> int | None:
        """The innermost checkpointed call under way (numbered from 1), None outside any."""
        return self._open[-1] if self._open else None

    def enter(self, reentrant: bool = False) -> None:
        self.count += 1
        self._open.append(self.count)
        if reentrant:
            self.reentrant.add(self.count)

    def exit(self) -> None:
        if self._open:
            self._open.pop()


@contextlib.contextmanager
def marked_regions(regions: CheckpointRegions):
    """Within the block, every checkpointed call enters a region of `regions` while its
    function runs."""
    generator = getattr(torch_checkpoint, "_checkpoint_without_reentrant_generator", None)
    function = getattr(torch_checkpoint, "CheckpointFunction", None)

    def non_reentrant(*args, **kwargs):
        inner = generator(*args, **kwargs)
        value = next(inner)  # before the function: the saved-tensor hooks go on
        regions.enter()
        try:
            yield value
        finally:
            regions.exit()
        yield from inner  # after it: they come off

    class Reentrant:
        @staticmethod
        def apply(run, *rest):
            def marked(*args):
                regions.enter(reentrant=True)
                try:
                    return run(*args)
                finally:
                    regions.exit()
            return function.apply(marked, *rest)

    if generator is not None:
        torch_checkpoint._checkpoint_without_reentrant_generator = non_reentrant
    if function is not None:
        torch_checkpoint.CheckpointFunction = Reentrant
    try:
        yield regions
    finally:
        if generator is not None:
            torch_checkpoint._checkpoint_without_reentrant_generator = generator
        if function is not None:
            torch_checkpoint.CheckpointFunction = function


@contextlib.contextmanager
def checkpointing_off():
    """Within the block a checkpointed call runs its function directly, as if the model did
    not checkpoint: what a measurement of activations needs (the Fisher probe takes
    gradients at activations a reentrant call makes without any, and a recomputation would
    run the probe's hooks twice)."""
    generator = getattr(torch_checkpoint, "_checkpoint_without_reentrant_generator", None)
    function = getattr(torch_checkpoint, "CheckpointFunction", None)

    def non_reentrant(*args, **kwargs):
        yield  # checkpoint() runs the function between its two next() calls

    class Reentrant:
        @staticmethod
        def apply(run, preserve, *args):
            return run(*args)

    if generator is not None:
        torch_checkpoint._checkpoint_without_reentrant_generator = non_reentrant
    if function is not None:
        torch_checkpoint.CheckpointFunction = Reentrant
    try:
        yield
    finally:
        if generator is not None:
            torch_checkpoint._checkpoint_without_reentrant_generator = generator
        if function is not None:
            torch_checkpoint.CheckpointFunction = function
