"""One intra-op thread for these tests: the tensors are tiny, and on a shared 2-core machine
OpenMP workers that wait for a busy core make each small kernel call cost milliseconds."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
