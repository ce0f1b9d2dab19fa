"""The web3 chain client on the in-process py-evm chain (``memory`` backend)."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from evidence_ledger.ledger.chain import (
    AnchorReceipt,
    ChainClient,
    OnChainCheckpoint,
    Web3Chain,
    load_keystore,
    log_id_for,
    memory_chain,
)
from evidence_ledger.ledger.contracts import load_artifact
from evidence_ledger.ledger.deployments import (
    DeploymentRecord,
    Deployments,
    deploy_contracts,
    verify_deployment,
)
from evidence_ledger.ledger.errors import ChainError, ContractRevertError, DeploymentError

ROOT_A = hashlib.sha256(b"a").digest()
ROOT_B = hashlib.sha256(b"b").digest()
ROOT_C = hashlib.sha256(b"c").digest()


@pytest.fixture(scope="module")
def chain() -> Web3Chain:
    c = memory_chain()
    yield c
    c.close()


def _log(name: str) -> bytes:
    return log_id_for(f"test.example/{name}/{os.urandom(4).hex()}")


def test_log_id_is_keccak_of_origin() -> None:
    # keccak256("") is the well-known c5d246...a470
    assert log_id_for("").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert len(log_id_for("example.org/log")) == 32
    assert log_id_for("a") != log_id_for("b")


def test_memory_chain_is_a_chain_client(chain: Web3Chain) -> None:
    assert isinstance(chain, ChainClient)
    assert chain.anchor_address and chain.anchor_address.startswith("0x")
    assert chain.authority_address and chain.authority_address != chain.anchor_address
    assert chain.is_available()
    assert chain.code_at(chain.anchor_address) == load_artifact("LedgerAnchor").deployed_bytecode


def test_anchor_returns_decoded_receipt(chain: Web3Chain) -> None:
    log_id = _log("receipt")
    before = datetime.now(UTC) - timedelta(minutes=5)
    receipt = chain.anchor(log_id, 3, ROOT_A)
    assert isinstance(receipt, AnchorReceipt)
    assert receipt.chain_id == chain.chain_id
    assert receipt.contract_address == chain.anchor_address
    assert receipt.tx_hash_hex.startswith("0x") and len(receipt.tx_hash_hex) == 66
    assert receipt.block_hash_hex.startswith("0x") and len(receipt.block_hash_hex) == 66
    assert receipt.block_number >= 1
    assert receipt.anchored_at.tzinfo is not None and receipt.anchored_at.utcoffset() == timedelta(0)
    assert receipt.anchored_at > before
    assert receipt.log_id == log_id
    assert receipt.checkpoint_index == 0
    assert receipt.tree_size == 3
    assert receipt.root_hash == ROOT_A
    assert 21_000 < receipt.gas_used < 200_000
    block = chain.w3.eth.get_block(receipt.block_number)
    assert "0x" + bytes(block["hash"]).hex() == receipt.block_hash_hex
    assert int(block["timestamp"]) == int(receipt.anchored_at.timestamp())

    second = chain.anchor(log_id, 10, ROOT_B)
    assert second.checkpoint_index == 1
    assert second.block_number > receipt.block_number
    # A later checkpoint of a log whose slot already exists costs less than the first one.
    assert second.gas_used < receipt.gas_used


def test_tree_size_must_strictly_grow(chain: Web3Chain) -> None:
    log_id = _log("grow")
    chain.anchor(log_id, 5, ROOT_A)
    with pytest.raises(ContractRevertError) as info:
        chain.anchor(log_id, 5, ROOT_B)
    assert info.value.error_name == "TreeSizeNotIncreasing"
    assert info.value.args_decoded == (log_id, 5, 5)
    assert "TreeSizeNotIncreasing" in str(info.value)
    with pytest.raises(ContractRevertError) as info:
        chain.anchor(log_id, 4, ROOT_B)
    assert info.value.error_name == "TreeSizeNotIncreasing"
    assert info.value.args_decoded == (log_id, 5, 4)
    assert isinstance(info.value, ChainError)
    assert chain.checkpoint_count(log_id) == 1


def test_zero_root_is_rejected(chain: Web3Chain) -> None:
    log_id = _log("zero")
    with pytest.raises(ContractRevertError) as info:
        chain.anchor(log_id, 1, bytes(32))
    assert info.value.error_name == "ZeroRoot"
    assert info.value.args_decoded == (log_id,)


def test_bad_arguments_are_rejected_before_sending(chain: Web3Chain) -> None:
    with pytest.raises(ValueError):
        chain.anchor(b"short", 1, ROOT_A)
    with pytest.raises(ValueError):
        chain.anchor(_log("bad"), 0, ROOT_A)
    with pytest.raises(ValueError):
        chain.anchor(_log("bad"), 2**64, ROOT_A)
    with pytest.raises(ValueError):
        chain.anchor(_log("bad"), 1, b"\x01" * 31)


def test_latest_find_and_count(chain: Web3Chain) -> None:
    log_id = _log("read")
    assert chain.checkpoint_count(log_id) == 0
    assert chain.latest_checkpoint(log_id) is None
    assert chain.find_checkpoint(log_id, 1) is None

    r1 = chain.anchor(log_id, 2, ROOT_A)
    r2 = chain.anchor(log_id, 8, ROOT_B)
    r3 = chain.anchor(log_id, 9, ROOT_C)
    assert chain.checkpoint_count(log_id) == 3

    latest = chain.latest_checkpoint(log_id)
    assert latest == OnChainCheckpoint(
        index=2, tree_size=9, root_hash=ROOT_C, anchored_at=r3.anchored_at, block_number=r3.block_number
    )
    found = chain.find_checkpoint(log_id, 8)
    assert found is not None
    assert (found.index, found.tree_size, found.root_hash, found.block_number) == (1, 8, ROOT_B, r2.block_number)
    assert found.anchored_at == r2.anchored_at
    assert chain.find_checkpoint(log_id, 2).block_number == r1.block_number
    assert chain.find_checkpoint(log_id, 5) is None  # between checkpoints
    assert chain.find_checkpoint(log_id, 100) is None  # beyond the latest
    assert chain.checkpoint_at(log_id, 0).root_hash == ROOT_A
    with pytest.raises(ContractRevertError) as info:
        chain.checkpoint_at(log_id, 3)
    assert info.value.error_name == "IndexOutOfRange"

    # Logs are independent.
    other = _log("other")
    assert chain.anchor(other, 1, ROOT_A).checkpoint_index == 0
    assert chain.checkpoint_count(log_id) == 3


def test_fetch_anchor_reads_back_the_receipt(chain: Web3Chain) -> None:
    log_id = _log("fetch")
    receipt = chain.anchor(log_id, 42, ROOT_A)
    assert chain.fetch_anchor(receipt.tx_hash_hex) == receipt
    assert chain.fetch_anchor(receipt.tx_hash_hex.removeprefix("0x")) == receipt
    assert chain.fetch_anchor(receipt.tx_hash_hex, contract_address=chain.anchor_address.lower()) == receipt


def test_find_anchor_recovers_a_receipt_from_the_chain(chain: Web3Chain) -> None:
    log_id = _log("find")
    receipts = [chain.anchor(log_id, size, root) for size, root in ((1, ROOT_A), (2, ROOT_B), (3, ROOT_C))]
    chain.anchor(_log("noise"), 1, ROOT_A)
    for r in receipts:
        assert chain.find_anchor(log_id, r.checkpoint_index) == r
    with pytest.raises(ContractRevertError) as info:
        chain.find_anchor(log_id, 3)
    assert info.value.error_name == "IndexOutOfRange"


def test_fetch_anchor_rejects_what_is_not_an_anchor(chain: Web3Chain) -> None:
    with pytest.raises(ChainError, match="not found"):
        chain.fetch_anchor("0x" + "11" * 32)
    # The Authority deployment is a transaction, but not an anchor.
    deployed = chain.deploy("Authority")
    with pytest.raises(ChainError, match="not an anchor transaction"):
        chain.fetch_anchor(deployed.tx_hash_hex)
    # An anchor of this contract, checked against another contract address.
    receipt = chain.anchor(_log("elsewhere"), 1, ROOT_A)
    with pytest.raises(ChainError, match="not an anchor transaction"):
        chain.fetch_anchor(receipt.tx_hash_hex, contract_address=deployed.address)


def test_read_only_client_cannot_anchor_but_can_read(chain: Web3Chain) -> None:
    log_id = _log("ro")
    receipt = chain.anchor(log_id, 1, ROOT_A)
    reader = Web3Chain(chain.w3, anchor_address=None, backend="memory")
    assert reader.read_only
    assert reader.fetch_anchor(receipt.tx_hash_hex, contract_address=chain.anchor_address) == receipt
    with pytest.raises(DeploymentError):
        reader.checkpoint_count(log_id)
    reader.anchor_address = chain.anchor_address
    assert reader.checkpoint_count(log_id) == 1
    with pytest.raises(ChainError, match="read-only"):
        reader.anchor(log_id, 2, ROOT_B)


def test_not_an_anchorer_is_refused(chain: Web3Chain) -> None:
    from eth_account import Account

    stranger = Account.create()
    # Fund the stranger so the only reason to fail is the contract's access control.
    funder = chain
    funder._transact({"to": stranger.address, "value": 10**18, "data": b""}, "funding")
    other = Web3Chain(chain.w3, anchor_address=chain.anchor_address, account=stranger, backend="memory")
    with pytest.raises(ContractRevertError) as info:
        other.anchor(_log("stranger"), 1, ROOT_A)
    assert info.value.error_name == "NotAnchorer"
    assert info.value.args_decoded == (stranger.address,)


def test_keystore_round_trip(tmp_path) -> None:
    from eth_account import Account

    account = Account.create()
    keystore = Account.encrypt(account.key, "s3cret", kdf="scrypt", iterations=2)
    path = tmp_path / "key.json"
    path.write_text(json.dumps(keystore))
    assert load_keystore(path, "s3cret") == "0x" + account.key.hex()
    with pytest.raises(ChainError, match="cannot decrypt"):
        load_keystore(path, "wrong")
    with pytest.raises(ChainError, match="cannot read"):
        load_keystore(tmp_path / "missing.json", "s3cret")


# -- deployments on the memory chain ------------------------------------------------------------


def test_deployments_file_round_trip(tmp_path) -> None:
    record = DeploymentRecord(
        address="0x" + "ab" * 20,
        tx_hash="0x" + "cd" * 32,
        block_number=7,
        deployed_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        code_sha256="00" * 32,
    )
    deployments = Deployments()
    deployments.set(31337, "LedgerAnchor", record)
    path = tmp_path / "sub" / "deployments.json"
    deployments.save(path)
    assert Deployments.load(path) == deployments
    assert Deployments.load(path).get(31337, "LedgerAnchor") == record
    assert Deployments.load(path).get(1, "LedgerAnchor") is None
    assert Deployments.load(tmp_path / "none.json").chain_ids() == []
    assert [p.name for p in path.parent.iterdir()] == ["deployments.json"]  # no temp files left
    path.write_text("{not json")
    with pytest.raises(DeploymentError):
        Deployments.load(path)


def test_deploy_and_verify_on_memory_chain(tmp_path) -> None:
    chain = memory_chain()
    path = tmp_path / "deployments.json"
    first_anchor = chain.anchor_address
    records = deploy_contracts(chain, None, path)
    # memory_chain's own deployments are not in the file: both are deployed and recorded.
    assert set(records) == {"LedgerAnchor", "Authority", "LotStatus"}
    assert chain.anchor_address == records["LedgerAnchor"].address != first_anchor
    deployments = Deployments.load(path)
    rec = deployments.get(chain.chain_id, "LedgerAnchor")
    assert rec == records["LedgerAnchor"]
    assert rec.code_sha256 == hashlib.sha256(load_artifact("LedgerAnchor").deployed_bytecode).hexdigest()
    assert verify_deployment(chain, deployments) == records

    # Idempotent: a second run deploys nothing (also in the two-argument form).
    block = chain.block_number()
    assert deploy_contracts(chain, None, path) == records
    assert deploy_contracts(chain, path) == records
    assert chain.block_number() == block
    assert records["LedgerAnchor"]["address"] == records["LedgerAnchor"].address
    with pytest.raises(KeyError):
        records["LedgerAnchor"]["nope"]

    # The file points LedgerAnchor at the Authority contract: mismatch.
    tampered = Deployments.load(path)
    tampered.set(chain.chain_id, "LedgerAnchor", records["Authority"])
    with pytest.raises(DeploymentError, match="does not match the artifact LedgerAnchor"):
        verify_deployment(chain, tampered)
    # No code at the address.
    empty = Deployments.load(path)
    empty.set(chain.chain_id, "Authority", DeploymentRecord("0x" + "00" * 19 + "01", "0x", 0, rec.deployed_at, ""))
    with pytest.raises(DeploymentError, match="no code"):
        verify_deployment(chain, empty)
    with pytest.raises(DeploymentError, match="no LedgerAnchor deployment"):
        verify_deployment(chain, Deployments())
    with pytest.raises(DeploymentError, match="chain id"):
        verify_deployment(chain, deployments, chain_id=1)


def test_legacy_only_node_gets_a_gas_price(chain: Web3Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node without EIP-1559 (no baseFeePerGas in blocks) gets a type-0 transaction."""
    real_get_block = chain.w3.eth.get_block

    def legacy_get_block(*args, **kwargs):
        block = dict(real_get_block(*args, **kwargs))
        block.pop("baseFeePerGas", None)
        return block

    monkeypatch.setattr(chain.w3.eth, "get_block", legacy_get_block)
    receipt = chain.anchor(_log("legacy"), 1, ROOT_A)
    tx = chain.w3.eth.get_transaction(receipt.tx_hash_hex)
    assert int(tx["type"]) == 0
    assert tx["gasPrice"] > 0
    assert "maxFeePerGas" not in tx or tx["maxFeePerGas"] is None
