"""Shared fixtures."""

import ctypes
import gc
import sys

import pytest
import torch
import typer.main
import typer.testing


# The suite allocates and frees many large tensors (batch-100 activations of 128x128 zoo models:
# tens of MB each). glibc serves such blocks with mmap and hands them back with munmap (or trims
# the heap top), so every allocation faults its pages in again: ~3.8 million minor page faults
# and ~13 s of system time per run. In this process only (children start with the defaults),
# big blocks come from the heap and freed memory stays with the process for reuse. No test
# asserts on this process's own RSS beyond "> 0"; the process-memory tests measure children.
def _keep_freed_memory() -> None:
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest: blocks up to 32 MB from the heap
    mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    mallopt(M_TOP_PAD, 64 << 20)


_keep_freed_memory()


# pytest rewrites the asserts of every module of every installed distribution that ships a pytest
# plugin. hypothesis ships one, so its ~80 modules were parsed, rewritten and compiled at every
# run (0.84 s of CPU; with PYTHONDONTWRITEBYTECODE set, as on this machine, nothing is cached).
# Its asserts are its own, not the suite's: left plain, they fail the same way, only without
# pytest's introspection of hypothesis's internals. The suite's test modules are still rewritten.
def _library_asserts_left_plain(packages=("hypothesis",)) -> None:
    for finder in sys.meta_path:
        marked = getattr(finder, "_must_rewrite", None)
        if isinstance(marked, set):
            marked.difference_update(packages)
            getattr(finder, "_marked_for_rewrite_cache", {}).clear()


_library_asserts_left_plain()


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one thread. The convolutions in these tests are tiny; on a
    loaded machine OpenMP's thread barriers can make each take milliseconds instead of
    microseconds. No count depends on the number of threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The edit-test loop, `python -m pytest -m quick`: the modules that check the cost model's
# numbers (MACs, memory, rules, trace, cross-checks), specs, policies, the Fisher probe and the
# layer order, in-process and on small models. Whole-command, subprocess, device-loop and
# report tests are left to the full suite. A test elsewhere can join with @pytest.mark.quick.
QUICK_MODULES = {"test_specs.py", "test_macs.py", "test_trace.py", "test_memory_paper.py",
                 "test_registry.py", "test_policy.py", "test_fisher.py", "test_layers.py",
                 "test_zoo.py", "test_api_boundary.py", "test_crosscheck.py", "test_apply.py",
                 "test_reparam_models.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in QUICK_MODULES:
            item.add_marker(pytest.mark.quick)


@pytest.fixture(scope="session")
def fork_server(tmp_path_factory):
    """One child that imported torch and pandas (never ttplan) and forks a copy per run, for
    the tests about a process start (tests/fork_server.py)."""
    from fork_server import ForkServer
    server = ForkServer(str(tmp_path_factory.mktemp("fork_server")))
    yield server
    server.close()


@pytest.fixture(autouse=True, scope="session")
def host_runtime_not_probed():
    """The host's runtime baseline is measured by two child processes (~10 s,
    devices.process); tests check the arithmetic with a fixed stand-in instead
    (tests/test_process_memory.py runs the real probe once)."""
    from ttplan.devices import process
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(process, "measured_host_runtime", lambda: (400 * 2**20, 5.0))
        yield


# Every `train` starts its own peak-RSS window with a full `gc.collect()` (devices/host.py), and
# a full collection walks every object the suite has imported: torch, the test modules, and
# torch._dynamo once an optimiser is built (~0.2-0.5 s of CPU per collection, dozens of runs).
# What is alive once collection is done lives as long as the session: it is moved out of the
# collector's reach (gc.freeze, as `ttplan`'s commands do after their imports), and once more
# after torch._dynamo's lazy import. Objects made later are collected as usual.
#
# Collections are also made rarer in this process (gen0 every 5,000 allocations instead of 700,
# a full one after 100 gen1s instead of 10): the suite makes many short-lived objects (fx graphs,
# cost rows, figures); in test_reports + the regression fixture the collector took 3.1 of ~30 s
# of CPU, 1.6 s with these thresholds (gc.callbacks, 13:23 UTC). Explicit
# collections (each `train`) still run; nothing here depends on when garbage goes.
def pytest_collection_finish(session):
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 20, 100)


_frozen_after = set()


@pytest.fixture(autouse=True)
def freeze_lazy_imports():
    yield
    if "torch._dynamo" in sys.modules and "torch._dynamo" not in _frozen_after:
        _frozen_after.add("torch._dynamo")
        gc.collect()
        gc.freeze()


# `CliRunner.invoke(app, ...)` turns the Typer app into a Click command on every call (~17 ms of
# CPU: every command's parameters read from its signature), hundreds of times in the suite. The
# app is never changed after import, so the command is built once per app and reused; each
# invocation still gets its own Click context, parsing and output streams.
_commands = {}


def _command_built_once(app):
    if id(app) not in _commands:
        _commands[id(app)] = (app, _build_command(app))  # the app is kept alive with its id
    return _commands[id(app)][1]


_build_command = typer.main.get_command
typer.testing._get_command = _command_built_once
