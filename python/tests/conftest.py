"""The fixtures: a real relay with real native workers (see ``servers.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import REPO, Relay, Worker, binary, clean_env, free_port

__all__ = ["REPO", "Relay", "Setup", "Worker", "binary", "clean_env", "free_port"]


class Setup:
    """A relay with one worker and a requester's key: what most tests need."""

    def __init__(self, relay: Relay, key: str, workers: list[Worker]) -> None:
        self.relay = relay
        self.key = key
        self.workers = workers

    @property
    def url(self) -> str:
        return self.relay.url


def start_setup(dir: Path, workers: int = 1) -> Setup:
    relay = Relay(dir)
    key = relay.create_key("lab")
    relay.start()
    return Setup(relay, key, [Worker(relay.url, dir, f"worker{i}") for i in range(workers)])


def stop_setup(setup: Setup) -> None:
    for worker in setup.workers:
        worker.stop()
    setup.relay.stop()


@pytest.fixture(scope="session")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One relay and two workers (kernel units need two distinct contributors) for the session."""
    started = start_setup(tmp_path_factory.mktemp("relay"), workers=2)
    yield started
    stop_setup(started)
