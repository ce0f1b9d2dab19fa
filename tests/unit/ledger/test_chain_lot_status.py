"""LotStatus calls of the web3 chain client, on the in-process chain; the lot key helper."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime

import pytest
from eth_utils import keccak

from evidence_ledger.ledger.chain import (
    LOT_STATUS_NAMES,
    LotOnChainStatus,
    Web3Chain,
    address_of_account,
    lot_digital_link_path,
    lot_key,
    memory_chain,
)
from evidence_ledger.ledger.contracts import CONTRACT_NAMES as ARTIFACT_NAMES
from evidence_ledger.ledger.contracts import load_artifact
from evidence_ledger.ledger.deployments import CONTRACT_NAMES, Deployments, deploy_contracts, verify_deployment
from evidence_ledger.ledger.errors import ChainError, ContractRevertError, DeploymentError

ZERO32 = b"\0" * 32
REASON = hashlib.sha256(b"recall notice 2025-0042").digest()


@pytest.fixture(scope="module")
def chain() -> Web3Chain:
    c = memory_chain()
    yield c
    c.close()


def _lot() -> bytes:
    return os.urandom(32)


def _second_key(chain: Web3Chain) -> str:
    return "0x" + chain.w3.provider.ethereum_tester.backend.account_keys[1].to_bytes().hex()


def _revert(call, *args, **kwargs) -> ContractRevertError:
    with pytest.raises(ContractRevertError) as e:
        call(*args, **kwargs)
    return e.value


# -- lot keys -----------------------------------------------------------------------------------


def test_lot_key_is_keccak_of_the_prefixed_digital_link_path() -> None:
    key = lot_key("09506000134352", "LOT42")
    assert key == keccak(b"evidence-ledger/lot//01/09506000134352/10/LOT42")
    assert key.hex() == "7eb12ab3ec0de997f1241f76da9afce65b85b5d06fa7dea3fe6dd72b8949707f"
    assert len(key) == 32


def test_lot_key_normalises_the_gtin_and_encodes_the_lot() -> None:
    # GTIN-13 and GTIN-14 of the same item: the same 14-digit path, the same key.
    assert lot_digital_link_path("9506000134352", "LOT42") == "/01/09506000134352/10/LOT42"
    assert lot_key("9506000134352", "LOT42") == lot_key("09506000134352", "LOT42")
    assert lot_digital_link_path("96385074", "A1") == "/01/00000096385074/10/A1"  # GTIN-8
    assert lot_digital_link_path("614141000036", "x") == "/01/00614141000036/10/x"  # GTIN-12
    # Lot numbers are case-sensitive and percent-encoded as in a Digital Link URI.
    assert lot_key("09506000134352", "lot42") != lot_key("09506000134352", "LOT42")
    assert lot_digital_link_path("09506000134352", "A/B%1&x") == "/01/09506000134352/10/A%2FB%251%26x"
    assert lot_digital_link_path("09506000134352", "a-b.c_d") == "/01/09506000134352/10/a-b.c_d"


@pytest.mark.parametrize(
    ("gtin", "lot"),
    [
        ("09506000134353", "LOT42"),  # wrong check digit
        ("0950600013435", "LOT42"),  # wrong check digit (13 digits)
        ("123", "LOT42"),  # wrong length
        ("0950600013435X", "LOT42"),  # not digits
        ("０９５０６０００１３４３５２", "LOT42"),  # non-ASCII digits
        ("09506000134352", ""),  # empty lot
        ("09506000134352", "L" * 21),  # lot longer than 20
        ("09506000134352", "LOT 42"),  # space: not in GS1 character set 82
        ("09506000134352", "LOT#42"),  # '#': not in set 82
        ("09506000134352", "LOTé"),
    ],
)
def test_lot_key_rejects_invalid_identifiers(gtin: str, lot: str) -> None:
    with pytest.raises(ValueError):
        lot_key(gtin, lot)


# -- deployment ---------------------------------------------------------------------------------


def test_lot_status_is_deployed_with_the_others(chain: Web3Chain) -> None:
    assert "LotStatus" in CONTRACT_NAMES and "LotStatus" in ARTIFACT_NAMES
    assert chain.lot_status_address not in (None, chain.anchor_address, chain.authority_address)
    assert chain.code_at(chain.lot_status_address) == load_artifact("LotStatus").deployed_bytecode
    assert chain.is_regulator(chain.address)


def test_old_deployments_file_gets_lot_status_on_the_next_deploy(tmp_path) -> None:
    """A file written before LotStatus existed: the next deploy adds LotStatus, keeps the rest."""
    chain = memory_chain()
    path = tmp_path / "deployments.json"
    old = deploy_contracts(chain, None, path, names=("LedgerAnchor", "Authority"))
    assert set(Deployments.load(path).for_chain(chain.chain_id)) == {"LedgerAnchor", "Authority"}
    with pytest.raises(DeploymentError, match="no LotStatus deployment recorded"):
        verify_deployment(chain, Deployments.load(path))

    block = chain.block_number()
    records = deploy_contracts(chain, path)
    assert chain.block_number() == block + 1  # only LotStatus was deployed
    assert records["LedgerAnchor"] == old["LedgerAnchor"] and records["Authority"] == old["Authority"]
    assert chain.lot_status_address == records["LotStatus"].address
    assert verify_deployment(chain, Deployments.load(path)).keys() == {"LedgerAnchor", "Authority", "LotStatus"}
    key = _lot()
    chain.set_lot_status(key, "Recalled", REASON)
    assert chain.is_recalled(key)

    tampered = Deployments.load(path)
    tampered.set(chain.chain_id, "LotStatus", records["Authority"])
    with pytest.raises(DeploymentError, match="does not match the artifact LotStatus"):
        verify_deployment(chain, tampered)
    chain.close()


def test_no_lot_status_address(chain: Web3Chain) -> None:
    bare = Web3Chain(chain.w3, account=chain.account, anchor_address=chain.anchor_address)
    assert bare.lot_status_address is None
    with pytest.raises(DeploymentError, match="no LotStatus deployment recorded"):
        bare.is_recalled(_lot())
    with pytest.raises(DeploymentError, match="no LotStatus deployment recorded"):
        bare.set_lot_status(_lot(), 2)
    bare.lot_status_address = chain.lot_status_address.lower()
    assert bare.lot_status_address == chain.lot_status_address  # checksummed


# -- statuses -----------------------------------------------------------------------------------


def test_set_and_read_status(chain: Web3Chain) -> None:
    key, parent = _lot(), _lot()
    assert chain.lot_status(key) == LotOnChainStatus("Unknown", None, ZERO32, ZERO32)
    assert not chain.is_recalled(key)

    tx = chain.set_lot_status(key, 2, REASON, parent)
    assert tx.startswith("0x") and len(tx) == 66
    receipt = chain.w3.eth.get_transaction_receipt(tx)
    ts = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    got = chain.lot_status(key)
    assert got == LotOnChainStatus("Recalled", datetime.fromtimestamp(ts, UTC), REASON, parent)
    assert got.recalled and got.updated_at.tzinfo is not None
    assert chain.is_recalled(key)
    with pytest.raises(AttributeError):
        got.status = "Active"  # type: ignore[misc]

    chain.set_lot_status(key, "Released")  # by name; reason and parent default to zero
    got = chain.lot_status(key)
    assert (got.status, got.reason_hash, got.parent, got.recalled) == ("Released", ZERO32, ZERO32, False)
    assert not chain.is_recalled(key)
    chain.set_lot_status(key, "Disposed", REASON)
    assert chain.lot_status(key).status == "Disposed"
    assert LOT_STATUS_NAMES == ("Unknown", "Active", "Recalled", "Disposed", "Released")


def test_reverts_are_translated_with_decoded_names(chain: Web3Chain) -> None:
    key = _lot()
    chain.set_lot_status(key, "Disposed")
    e = _revert(chain.set_lot_status, key, "Recalled")
    assert (e.error_name, e.args_decoded) == ("InvalidTransition", (key, 3, 2))
    assert "InvalidTransition(0x" + key.hex() in str(e)
    e = _revert(chain.set_lot_status, _lot(), "Released")  # only from Recalled
    assert e.error_name == "InvalidTransition" and e.args_decoded[1:] == (0, 4)
    e = _revert(chain.set_lot_status, _lot(), 9)
    assert (e.error_name, e.args_decoded) == ("InvalidStatus", (9,))
    e = _revert(chain.set_lot_status, ZERO32, 2)
    assert (e.error_name, e.args_decoded) == ("ZeroLotKey", (0,))
    e = _revert(chain.set_lot_status, key, 2, REASON, key)
    assert (e.error_name, e.args_decoded) == ("SelfParent", (key,))


def test_bad_arguments_raise_before_any_transaction(chain: Web3Chain) -> None:
    block = chain.block_number()
    for call in (
        lambda: chain.set_lot_status(b"short", 2),
        lambda: chain.set_lot_status(_lot(), 2, b"short"),
        lambda: chain.set_lot_status(_lot(), 2, ZERO32, b"short"),
        lambda: chain.set_lot_status(_lot(), "Lost"),
        lambda: chain.set_lot_status(_lot(), -1),
        lambda: chain.set_lot_status(_lot(), 256),
        lambda: chain.set_lot_status(_lot(), True),
        lambda: chain.set_lot_status_batch([_lot(), b"short"], 2, REASON, ZERO32),
        lambda: chain.set_lot_status_batch([_lot()], 2, REASON, b"short"),
        lambda: chain.lot_status(b"short"),
        lambda: chain.is_recalled("0x" + "00" * 32),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError):
            call()
    assert chain.block_number() == block


def test_batch(chain: Web3Chain) -> None:
    root = _lot()
    children = [_lot() for _ in range(20)]
    tx = chain.set_lot_status_batch([root, *children], "Recalled", REASON, root)
    receipt = chain.w3.eth.get_transaction_receipt(tx)
    assert receipt["status"] == 1
    assert chain.lot_status(root).parent == ZERO32  # the root is nobody's child
    for key in children:
        got = chain.lot_status(key)
        assert (got.status, got.reason_hash, got.parent) == ("Recalled", REASON, root)
        assert chain.is_recalled(key)
    # All or nothing: one disposed lot makes the batch revert, naming it.
    chain.set_lot_status(children[5], "Disposed")
    e = _revert(chain.set_lot_status_batch, children, "Released", REASON, root)
    assert (e.error_name, e.args_decoded) == ("InvalidTransition", (children[5], 3, 4))
    assert chain.lot_status(children[0]).status == "Recalled"


def test_batch_bounds(chain: Web3Chain) -> None:
    e = _revert(chain.set_lot_status_batch, [], 2, REASON, ZERO32)
    assert (e.error_name, e.args_decoded) == ("EmptyBatch", ())
    e = _revert(chain.set_lot_status_batch, [os.urandom(32) for _ in range(501)], 2, REASON, ZERO32)
    assert (e.error_name, e.args_decoded) == ("BatchTooLarge", (501, 500))


def test_batch_of_500_in_one_transaction(chain: Web3Chain) -> None:
    keys = [_lot() for _ in range(500)]
    tx = chain.set_lot_status_batch(tuple(keys), "Recalled", REASON, _lot())
    receipt = chain.w3.eth.get_transaction_receipt(tx)
    assert receipt["status"] == 1 and receipt["gasUsed"] < 15_000_000
    assert chain.is_recalled(keys[0]) and chain.is_recalled(keys[-1])


# -- regulators ---------------------------------------------------------------------------------


def test_regulators_sign_with_their_own_key(chain: Web3Chain) -> None:
    regulator_key = _second_key(chain)
    regulator = address_of_account(regulator_key)
    key = _lot()
    assert not chain.is_regulator(regulator)
    e = _revert(chain.set_lot_status, key, "Recalled", private_key=regulator_key)
    assert (e.error_name, e.args_decoded) == ("NotRegulator", (regulator,))

    chain.grant_regulator(regulator)
    assert chain.is_regulator(regulator)
    tx = chain.set_lot_status(key, "Recalled", REASON, private_key=regulator_key)
    assert chain.w3.eth.get_transaction(tx)["from"] == regulator
    chain.set_lot_status_batch([_lot()], "Recalled", REASON, key, private_key=regulator_key)
    assert chain.address == chain.account.address  # the client's own account is untouched

    e = _revert(chain.grant_regulator, regulator, private_key=regulator_key)  # not the owner
    assert (e.error_name, e.args_decoded) == ("NotOwner", (regulator,))
    chain.revoke_regulator(regulator)
    assert not chain.is_regulator(regulator)
    e = _revert(chain.set_lot_status, key, "Released", private_key=regulator_key)
    assert e.error_name == "NotRegulator"
    e = _revert(chain.grant_regulator, "0x" + "00" * 20)
    assert (e.error_name, e.args_decoded) == ("ZeroAddress", ())


def test_read_only_client_reads_but_cannot_write(chain: Web3Chain) -> None:
    key = _lot()
    chain.set_lot_status(key, "Recalled", REASON)
    till = Web3Chain(chain.w3, anchor_address=chain.anchor_address)
    till.lot_status_address = chain.lot_status_address
    assert till.read_only and till.is_recalled(key)
    assert till.lot_status(key).reason_hash == REASON
    with pytest.raises(ChainError, match="read-only"):
        till.set_lot_status(_lot(), "Recalled")
    with pytest.raises(ChainError, match="read-only"):
        till.set_lot_status_batch([_lot()], "Recalled")
