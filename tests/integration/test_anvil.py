"""A real anvil: lifecycle, deployment and its verification, anchoring, persistence, outages."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from evidence_ledger.ledger.anvil import ANVIL_DEV_ADDRESS, ANVIL_DEV_PRIVATE_KEY, AnvilNode
from evidence_ledger.ledger.chain import Web3Chain, connect, log_id_for, read_only
from evidence_ledger.ledger.contracts import load_artifact
from evidence_ledger.ledger.deployments import (
    DeploymentRecord,
    Deployments,
    deploy_contracts,
    verify_deployment,
)
from evidence_ledger.ledger.errors import (
    AnvilError,
    ChainError,
    ChainUnavailableError,
    ContractRevertError,
    DeploymentError,
)

from .conftest import free_port

pytestmark = [pytest.mark.anvil, pytest.mark.timeout(180)]


def _root(i: int) -> bytes:
    return hashlib.sha256(f"root-{i}".encode()).digest()


def _log(name: str) -> bytes:
    return log_id_for(f"it.example/{name}/{os.urandom(4).hex()}")


# -- lifecycle ------------------------------------------------------------------------------------


def test_status_of_running_node(anvil_node: AnvilNode) -> None:
    status = anvil_node.status()
    assert status.running
    assert status.pid is not None and status.pid > 0
    assert status.chain_id == 31337
    assert status.block_number is not None and status.block_number >= 0
    assert status.rpc_url == f"http://127.0.0.1:{anvil_node.port}"
    assert anvil_node.pid_file.read_text().strip() == str(status.pid)


def test_up_is_idempotent(anvil_node: AnvilNode) -> None:
    pid = anvil_node.status().pid
    assert anvil_node.up().pid == pid
    # Another manager for the same state dir and port adopts the running node.
    twin = AnvilNode(anvil_node.binary, anvil_node.state_dir, port=anvil_node.port)
    status = twin.up()
    assert status.running and status.pid == pid


def test_port_taken_by_someone_else(anvil_node: AnvilNode, tmp_path: Path) -> None:
    intruder = AnvilNode(anvil_node.binary, tmp_path / "other", port=anvil_node.port)
    with pytest.raises(AnvilError, match="already in use"):
        intruder.up(timeout_s=5)
    assert not (tmp_path / "other" / "anvil.pid").exists()
    # A plain TCP listener (not JSON-RPC) is reported too.
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        node = AnvilNode(anvil_node.binary, tmp_path / "third", port=s.getsockname()[1])
        with pytest.raises(AnvilError, match="another process"):
            node.up(timeout_s=5)


def test_find_binary(anvil_binary: Path, tmp_path: Path) -> None:
    from evidence_ledger.ledger.anvil import find_anvil_binary

    from .conftest import PROJECT_ROOT

    assert find_anvil_binary(anvil_binary) == anvil_binary
    assert "@foundry-rs" in str(find_anvil_binary(PROJECT_ROOT / "node_modules"))
    assert "@foundry-rs" in str(find_anvil_binary(PROJECT_ROOT))
    with pytest.raises(AnvilError, match="not found"):
        find_anvil_binary(tmp_path / "anvil")
    with pytest.raises(AnvilError, match="not found"):
        find_anvil_binary(tmp_path)


def test_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(AnvilError, match="not found"):
        AnvilNode(tmp_path / "no-anvil", tmp_path / "state", port=free_port()).up()


def test_failed_start_reports_log_tail(anvil_binary: Path, tmp_path: Path) -> None:
    node = AnvilNode(anvil_binary, tmp_path / "state", port=free_port(), extra_args=["--no-such-flag"])
    with pytest.raises(AnvilError) as info:
        node.up(timeout_s=10)
    assert "--no-such-flag" in str(info.value)
    assert not node.status().running


def test_down_up_status(fresh_anvil: AnvilNode) -> None:
    assert not fresh_anvil.status().running
    fresh_anvil.down()  # stopping a stopped node is fine
    status = fresh_anvil.up()
    assert status.running
    fresh_anvil.down()
    after = fresh_anvil.status()
    assert not after.running and after.pid is None and after.chain_id is None
    assert not fresh_anvil.pid_file.exists()
    assert fresh_anvil.state_file.exists()  # dumped on the clean exit
    with pytest.raises(AnvilError):
        fresh_anvil.kill9()


# -- deployments ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployed(anvil_node: AnvilNode, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Deployments]:
    path = tmp_path_factory.mktemp("deploy") / "deployments.json"
    deploy_contracts(anvil_node.rpc_url, ANVIL_DEV_PRIVATE_KEY, path)
    return path, Deployments.load(path)


def test_deploy_and_verify(anvil_node: AnvilNode, deployed: tuple[Path, Deployments]) -> None:
    path, deployments = deployed
    anchor = deployments.get(31337, "LedgerAnchor")
    authority = deployments.get(31337, "Authority")
    assert anchor is not None and authority is not None and anchor.address != authority.address
    assert anchor.code_sha256 == hashlib.sha256(load_artifact("LedgerAnchor").deployed_bytecode).hexdigest()
    assert anchor.deployed_at.tzinfo is not None
    assert verify_deployment(anvil_node.rpc_url, deployments, 31337).keys() == {"LedgerAnchor", "Authority", "LotStatus"}
    # Deploying again is a no-op.
    block = anvil_node.status().block_number
    assert deploy_contracts(anvil_node.rpc_url, ANVIL_DEV_PRIVATE_KEY, path)["LedgerAnchor"] == anchor
    assert anvil_node.status().block_number == block


def test_verify_detects_wrong_code(anvil_node: AnvilNode, deployed: tuple[Path, Deployments], tmp_path: Path) -> None:
    _, deployments = deployed
    # Deploy Authority's bytecode and record it as LedgerAnchor.
    with connect(anvil_node.rpc_url, ANVIL_DEV_PRIVATE_KEY, deployments) as chain:
        impostor = chain.deploy("Authority")
    tampered = Deployments.load(deployed[0])
    tampered.set(
        31337,
        "LedgerAnchor",
        DeploymentRecord(impostor.address, impostor.tx_hash_hex, impostor.block_number, impostor.deployed_at, "x"),
    )
    with pytest.raises(DeploymentError, match=r"deployed code at 0x[0-9a-fA-F]{40} does not match the artifact LedgerAnchor \(sha256 [0-9a-f]{64} vs [0-9a-f]{64}\)"):
        verify_deployment(anvil_node.rpc_url, tampered, 31337)
    # A recorded address without code.
    ghost = Deployments.load(deployed[0])
    ghost.set(31337, "Authority", DeploymentRecord("0x" + "42" * 20, "0x", 0, impostor.deployed_at, "x"))
    with pytest.raises(DeploymentError, match="no code deployed"):
        verify_deployment(anvil_node.rpc_url, ghost, 31337)
    # connect(strict=True) refuses an address without code, and a chain with nothing recorded.
    ghost.set(31337, "LedgerAnchor", DeploymentRecord("0x" + "42" * 20, "0x", 0, impostor.deployed_at, "x"))
    with pytest.raises(DeploymentError, match="no code"):
        connect(anvil_node.rpc_url, None, ghost, strict=True)
    with pytest.raises(DeploymentError, match="no LedgerAnchor deployment recorded for chain id 31337"):
        connect(anvil_node.rpc_url, None, Deployments(), strict=True)
    # Lenient (the default, for deploying): the error comes when the contract is used.
    with connect(anvil_node.rpc_url, None, Deployments()) as bare:
        assert bare.anchor_address is None
        with pytest.raises(DeploymentError, match="no LedgerAnchor deployment recorded for chain id 31337"):
            bare.checkpoint_count(_log("bare"))


def test_deploy_through_a_connected_client(anvil_node: AnvilNode, tmp_path: Path) -> None:
    """The CLI's flow: connect (nothing recorded yet), then deploy_contracts(client, path)."""
    path = tmp_path / "deployments.json"
    with connect(anvil_node.rpc_url, ANVIL_DEV_PRIVATE_KEY, Deployments.load(path)) as client:
        result = deploy_contracts(client, path)
        assert client.anchor_address == result["LedgerAnchor"]["address"]
        receipt = client.anchor(_log("cli"), 1, _root(1))
        assert receipt.contract_address == result["LedgerAnchor"].address
    verify_deployment(anvil_node.rpc_url, Deployments.load(path))


# -- anchoring ------------------------------------------------------------------------------------


def test_anchor_several_checkpoints(anvil_node: AnvilNode, deployed: tuple[Path, Deployments]) -> None:
    _, deployments = deployed
    log_id = _log("several")
    with connect(anvil_node.rpc_url, ANVIL_DEV_PRIVATE_KEY, deployments) as chain:
        assert chain.chain_id == 31337 and chain.address == ANVIL_DEV_ADDRESS
        receipts = [chain.anchor(log_id, size, _root(size)) for size in (1, 5, 17, 1000)]
        assert [r.checkpoint_index for r in receipts] == [0, 1, 2, 3]
        assert [r.tree_size for r in receipts] == [1, 5, 17, 1000]
        assert len({r.block_number for r in receipts}) == 4  # automine: a block per tx
        assert receipts[1].gas_used < receipts[0].gas_used
        assert chain.checkpoint_count(log_id) == 4
        latest = chain.latest_checkpoint(log_id)
        assert (latest.index, latest.tree_size, latest.root_hash) == (3, 1000, _root(1000))
        assert chain.find_checkpoint(log_id, 17).block_number == receipts[2].block_number
        assert chain.find_checkpoint(log_id, 16) is None
        with pytest.raises(ContractRevertError) as info:
            chain.anchor(log_id, 1000, _root(1))
        assert info.value.error_name == "TreeSizeNotIncreasing"
        assert info.value.args_decoded == (log_id, 1000, 1000)
        for r in receipts:
            assert chain.fetch_anchor(r.tx_hash_hex) == r
            assert chain.find_anchor(log_id, r.checkpoint_index) == r

        # A verifier with only an RPC URL and the contract address from a bundle.
        with read_only(anvil_node.rpc_url) as verifier:
            assert verifier.fetch_anchor(receipts[2].tx_hash_hex, contract_address=receipts[2].contract_address) == receipts[2]
            with pytest.raises(ChainError, match="not found"):
                verifier.fetch_anchor("0x" + "ab" * 32, contract_address=receipts[2].contract_address)

    with connect(anvil_node.rpc_url, None, deployments) as reader:
        assert reader.read_only
        assert reader.checkpoint_count(log_id) == 4
        with pytest.raises(ChainError, match="read-only"):
            reader.anchor(log_id, 2000, _root(2000))


def test_concurrent_anchors_get_distinct_nonces(anvil_node: AnvilNode, deployed: tuple[Path, Deployments]) -> None:
    _, deployments = deployed
    logs = [_log(f"thread{i}") for i in range(4)]
    errors: list[BaseException] = []
    with connect(anvil_node.rpc_url, ANVIL_DEV_PRIVATE_KEY, deployments) as chain:

        def work(log_id: bytes) -> None:
            try:
                for size in (1, 2, 3):
                    chain.anchor(log_id, size, _root(size))
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=(log_id,)) for log_id in logs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert [chain.checkpoint_count(log_id) for log_id in logs] == [3, 3, 3, 3]


# -- persistence ----------------------------------------------------------------------------------


def _snapshot(chain: Web3Chain) -> dict[int, str]:
    """Block number -> hash of the whole chain, checking that every block links to its parent
    (including the genesis: anvil 1.7.1 re-creates it on each start, AnvilNode drops the copies)."""
    blocks = [chain.w3.eth.get_block(n) for n in range(chain.block_number() + 1)]
    for parent, child in zip(blocks, blocks[1:]):
        assert child["parentHash"] == parent["hash"], f"block {child['number']} does not link to its parent"
    return {int(b["number"]): "0x" + bytes(b["hash"]).hex() for b in blocks}


def test_persistence_across_clean_restart_and_kill9(fresh_anvil: AnvilNode, tmp_path: Path) -> None:
    node = fresh_anvil
    node.up()
    path = tmp_path / "deployments.json"
    deploy_contracts(node.rpc_url, ANVIL_DEV_PRIVATE_KEY, path)
    deployments = Deployments.load(path)
    log_id = _log("persist")
    with connect(node.rpc_url, ANVIL_DEV_PRIVATE_KEY, deployments) as chain:
        receipts = [chain.anchor(log_id, size, _root(size)) for size in (10, 20, 30)]
        blocks = _snapshot(chain)

    # 1. Clean stop (SIGTERM: anvil dumps its state on exit) and restart.
    node.down()
    first_pid_status = node.up()
    assert first_pid_status.running and first_pid_status.block_number == max(blocks)
    with connect(node.rpc_url, ANVIL_DEV_PRIVATE_KEY, deployments) as chain:
        verify_deployment(chain, deployments)
        assert {n: h for n, h in _snapshot(chain).items() if n in blocks} == blocks
        for r in receipts:
            assert chain.fetch_anchor(r.tx_hash_hex) == r
        assert chain.checkpoint_count(log_id) == 3
        assert chain.latest_checkpoint(log_id).tree_size == 30
        # The chain goes on where it stopped (nonce and tree sizes).
        receipts.append(chain.anchor(log_id, 40, _root(40)))
        assert receipts[-1].checkpoint_index == 3
        assert receipts[-1].block_number == max(blocks) + 1
        receipts.append(chain.anchor(log_id, 50, _root(50)))
        blocks = _snapshot(chain)

    # 2. Crash (kill -9, no dump on exit) after more than the state interval.
    time.sleep(node.state_interval_s + 1.5)
    node.kill9()
    assert not node.status().running
    status = node.up()
    assert status.running and status.block_number == max(blocks)
    with connect(node.rpc_url, ANVIL_DEV_PRIVATE_KEY, deployments) as chain:
        verify_deployment(chain, deployments)
        assert {n: h for n, h in _snapshot(chain).items() if n in blocks} == blocks
        for r in receipts:
            assert chain.fetch_anchor(r.tx_hash_hex) == r
            assert chain.find_anchor(log_id, r.checkpoint_index) == r
        assert chain.checkpoint_count(log_id) == 5
        assert chain.latest_checkpoint(log_id).tree_size == 50
        with pytest.raises(ContractRevertError):
            chain.anchor(log_id, 50, _root(51))
        assert chain.anchor(log_id, 60, _root(60)).checkpoint_index == 5


def test_fresh_node_needs_redeploy(fresh_anvil: AnvilNode, tmp_path: Path) -> None:
    """A deployments file recorded against a chain that was wiped: deploy_contracts redeploys."""
    path = tmp_path / "deployments.json"
    fresh_anvil.up()
    first = deploy_contracts(fresh_anvil.rpc_url, ANVIL_DEV_PRIVATE_KEY, path)
    fresh_anvil.down()
    fresh_anvil.state_file.unlink()
    fresh_anvil.up()
    assert fresh_anvil.status().block_number == 0
    with pytest.raises(DeploymentError, match="no code"):
        verify_deployment(fresh_anvil.rpc_url, Deployments.load(path))
    second = deploy_contracts(fresh_anvil.rpc_url, ANVIL_DEV_PRIVATE_KEY, path)
    # Same key, nonce and code: the same (deterministic) transaction lands at the same address.
    assert second["LedgerAnchor"].address == first["LedgerAnchor"].address
    assert fresh_anvil.status().block_number == 3
    verify_deployment(fresh_anvil.rpc_url, Deployments.load(path))


# -- outages --------------------------------------------------------------------------------------


def test_chain_down_is_unavailable_quickly(fresh_anvil: AnvilNode, tmp_path: Path) -> None:
    node = fresh_anvil
    node.up()
    path = tmp_path / "deployments.json"
    deploy_contracts(node.rpc_url, ANVIL_DEV_PRIVATE_KEY, path)
    chain = connect(node.rpc_url, ANVIL_DEV_PRIVATE_KEY, Deployments.load(path), timeout_s=2)
    try:
        assert chain.is_available()
        node.down()
        start = time.monotonic()
        assert not chain.is_available()
        with pytest.raises(ChainUnavailableError):
            chain.checkpoint_count(_log("down"))
        with pytest.raises(ChainUnavailableError):
            chain.anchor(_log("down"), 1, _root(1))
        with pytest.raises(ChainUnavailableError):
            chain.fetch_anchor("0x" + "00" * 32)
        assert time.monotonic() - start < 3
        with pytest.raises(ChainUnavailableError):
            connect(node.rpc_url, ANVIL_DEV_PRIVATE_KEY, Deployments.load(path), timeout_s=2)
        # And back.
        node.up()
        assert chain.is_available()
        assert chain.checkpoint_count(_log("down")) == 0
    finally:
        chain.close()


def test_unresponsive_endpoint_times_out() -> None:
    """A port that accepts connections but never answers: ChainUnavailableError after timeout_s."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        start = time.monotonic()
        with pytest.raises(ChainUnavailableError):
            read_only(f"http://127.0.0.1:{s.getsockname()[1]}", timeout_s=1)
        assert time.monotonic() - start < 5
