"""Shared fixtures: tiny models with fixed seeds, so tests are fast and deterministic on CPU."""

from __future__ import annotations

import pytest

try:
    import torch
except ModuleNotFoundError as missing:  # a Python without the project installed: say how to install it
    raise pytest.UsageError(
        'this Python has no torch: install the project with its test extras first, as README says: '
        'pip install "torch==2.13.0" -e ".[test]" && python -m pytest'
    ) from missing


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _single_thread_determinism() -> None:
    torch.manual_seed(0)
