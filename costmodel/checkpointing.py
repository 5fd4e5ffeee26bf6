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


def checkpointed_calls(graph) -> dict[int, list]:
    """{region: its operators, in order} of a traced graph's checkpointed calls; {} for a
    graph without any. Fixed per graph: computed once (the memory model, the gradients'
    reach and the warnings all read it)."""
    calls = graph.derived.get("checkpointed_calls")
    if calls is None:
        calls = {}
        for node in graph.ops():
            region = node.attrs.get("checkpoint")
            if region is not None:
                calls.setdefault(region, []).append(node)
        graph.derived["checkpointed_calls"] = calls
    return calls


@contextlib.contextmanager
def _entry_points(non_reentrant, reentrant):
    """Within the block, `checkpoint()` reaches `non_reentrant` (a generator function in the
    place of the one around a non-reentrant call) and `reentrant` (an object with `apply`, in
    the place of the reentrant call's autograd Function)."""
    names = ("_checkpoint_without_reentrant_generator", "CheckpointFunction")
    saved = {n: getattr(torch_checkpoint, n) for n in names if hasattr(torch_checkpoint, n)}
    for name, replacement in zip(names, (non_reentrant, reentrant)):
        if name in saved:
            setattr(torch_checkpoint, name, replacement)
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(torch_checkpoint, name, original)


@contextlib.contextmanager
def marked_regions(regions: CheckpointRegions):
    """Within the block, every checkpointed call enters a region of `regions` while its
    function runs."""
    generator = torch_checkpoint._checkpoint_without_reentrant_generator
    function = torch_checkpoint.CheckpointFunction

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

    with _entry_points(non_reentrant, Reentrant):
        yield regions


@contextlib.contextmanager
def checkpointing_off():
    """Within the block a checkpointed call runs its function directly, as if the model did
    not checkpoint: what a measurement of activations needs (the Fisher probe takes
    gradients at activations a reentrant call makes without any, and a recomputation would
    run the probe's hooks twice)."""
    def non_reentrant(*args, **kwargs):
        yield  # checkpoint() runs the function between its two next() calls

    class Reentrant:
        @staticmethod
        def apply(run, preserve, *args):
            return run(*args)

    with _entry_points(non_reentrant, Reentrant):
        yield
