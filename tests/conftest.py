"""Fixtures shared by every tier (``tests/unit``, ``tests/app``, ``tests/browser``).

Nothing heavy is imported here: collecting the unit tier must not pay for torch.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models are bound by per-op overhead; a second torch thread only adds contention on
    shared CI cores. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
