"""Errors that carry a one-line message for the user.

Every problem caused by the user's input (a malformed budget, an unknown model, a broken
policy file, an untraceable model) raises a subclass of `TtplanError`. The CLI prints its
message on one line and exits with status 2; nothing else is ever shown as a traceback.
"""


class TtplanError(Exception):
    """A problem with the user's input, explained in one line."""


class SpecError(TtplanError):
    """A malformed command-line value: input shape, update spec, budget, bit-width."""


class ModelLoadError(TtplanError):
    """An unknown model name, an import path that fails, unreadable weights."""


class TraceError(TtplanError):
    """A model that no tracing path could turn into a layer graph."""


class PolicyError(TtplanError):
    """A policy or Fisher file that is malformed or belongs to another model."""


def moved_keywords(moved: dict[str, str]):
    """A decorator refusing keywords a function no longer takes with a one-line TypeError that
    says where each went (`moved`: {old keyword: the new way}), instead of Python's bare
    "unexpected keyword argument"."""
    import functools

    def wrap(function):
        @functools.wraps(function)
        def call(*args, **kwargs):
            old = [key for key in kwargs if key in moved]
            if old:
                raise TypeError(f"{function.__name__}() no longer takes {old[0]}=: "
                                f"{moved[old[0]]}")
            return function(*args, **kwargs)
        return call
    return wrap
