"""Integration fixtures: a real anvil node (from the npm package @foundry-rs/anvil).

``anvil_node`` is started once per session on a free port, in a temporary state dir, and is
always stopped at the end (the finaliser runs even when tests fail).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence_ledger.ledger.anvil import ANVIL_DEV_PRIVATE_KEY, AnvilNode, find_anvil_binary
from evidence_ledger.ledger.errors import AnvilError

from ..conftest import missing

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port that was free a moment ago (bind 127.0.0.1:0, read it back, release it)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def anvil_binary() -> Path:
    try:
        return find_anvil_binary(search_roots=[PROJECT_ROOT])
    except AnvilError as e:
        missing(f"anvil is not installed (run `make setup`): {e}")


@pytest.fixture(scope="session")
def anvil_node(anvil_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    node = AnvilNode(anvil_binary, tmp_path_factory.mktemp("anvil-state"), port=free_port())
    try:
        node.up(timeout_s=30)
        yield node
    finally:
        _stop(node)


@pytest.fixture(scope="session")
def anvil_private_key() -> str:
    return ANVIL_DEV_PRIVATE_KEY


@pytest.fixture
def fresh_anvil(anvil_binary: Path, tmp_path: Path) -> Iterator[AnvilNode]:
    """A private anvil for tests that stop, crash or restart the node."""
    node = AnvilNode(anvil_binary, tmp_path / "anvil", port=free_port(), state_interval_s=1)
    try:
        yield node
    finally:
        _stop(node)


def _stop(node: AnvilNode) -> None:
    with contextlib.suppress(AnvilError):
        node.down()
    # If SIGTERM/SIGKILL via the pid file failed somehow, do not leave a process behind.
    proc = node._proc
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(5)
