"""Shared fixtures."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one thread. The convolutions in these tests are tiny; on a
    loaded machine OpenMP's thread barriers can make each take milliseconds instead of
    microseconds. No count depends on the number of threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def host_runtime_not_probed():
    """The host's runtime baseline is measured by two child processes (~10 s,
    devices.process); tests check the arithmetic with a fixed stand-in instead
    (tests/test_process_memory.py runs the real probe once)."""
    from ttplan.devices import process
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(process, "measured_host_runtime", lambda: (400 * 2**20, 5.0))
        yield
