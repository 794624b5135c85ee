"""Integration tests run whole presets in-process; tiny ops are faster on one thread when the
machine's cores are shared, and a run's numbers do not depend on the thread count."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
