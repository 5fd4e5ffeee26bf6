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
