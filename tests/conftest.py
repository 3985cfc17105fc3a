"""Shared fixtures: tiny random-weight checkpoints made through the real import path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support.tiny import make_tiny_weights

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of tiny random-weight checkpoints for every mode and the detector."""
    return make_tiny_weights(tmp_path_factory.mktemp("tiny") / "weights")


@pytest.fixture(scope="session")
def photos() -> Path:
    """The real old photos copied into the repository for tests."""
    return DATA / "photos"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how this CPU's float32 numbers compare with the published float32 files (a report, not a test)."""
    from tests.support.parity import REPORT

    if REPORT:
        terminalreporter.section("parity on this CPU (report only)")
        for line in REPORT:
            terminalreporter.write_line(line)
