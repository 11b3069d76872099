"""Root of the test suite. Under pytest-xdist (the README's `-n 2`) each worker computes on one thread:
two workers then share the 2 cores instead of oversubscribing them, and small tensor ops run faster on one
thread than split over two (the suite took 7 minutes this way, 17 in one process of 2 threads)."""

from __future__ import annotations

import os


def pytest_configure(config) -> None:  # type: ignore[no-untyped-def]
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
