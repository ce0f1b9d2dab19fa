"""LedgerAnchor: every function, every custom error (name and arguments), every event."""

from __future__ import annotations

import hashlib

import pytest

from evidence_ledger.ledger.contracts import load_artifact

ZERO_ADDRESS = "0x" + "00" * 20
UINT64_MAX = 2**64 - 1

LOG_A = hashlib.sha256(b"evidence").digest()
LOG_B = hashlib.sha256(b"trace").digest()


def root(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "big")).digest()


def checkpoint(tree_size: int, root_hash: bytes, anchored_at: int, block_number: int) -> tuple:
    return (tree_size, root_hash, anchored_at, block_number)


# ------------------------------------------------------------------------------ deployment


def test_deployed_code_matches_artifact(chain, ledger_anchor):
    assert chain.w3.eth.get_code(ledger_anchor.address) == load_artifact("LedgerAnchor").deployed_bytecode


def test_constructor_sets_owner_and_anchorer_and_emits(chain, accounts, get_events):
    contract = chain.deploy("LedgerAnchor", accounts.deployer, accounts.owner)
    receipt = contract.deploy_receipt
    assert contract.functions.owner().call() == accounts.owner
    assert contract.functions.pendingOwner().call() == ZERO_ADDRESS
    assert contract.functions.isAnchorer(accounts.owner).call() is True
    assert contract.functions.isAnchorer(accounts.deployer).call() is False
    assert get_events(contract, "OwnershipTransferred", receipt) == [
        {"previousOwner": ZERO_ADDRESS, "newOwner": accounts.owner}
    ]
    assert get_events(contract, "AnchorerGranted", receipt) == [
        {"account": accounts.owner, "by": accounts.deployer}
    ]


def test_constructor_rejects_zero_owner(chain, accounts, ledger_anchor):
    with chain.reverts(ledger_anchor, "ZeroAddress"):
        chain.deploy("LedgerAnchor", accounts.deployer, ZERO_ADDRESS)


# ------------------------------------------------------------------------------ anchoring


def test_first_anchor(chain, accounts, ledger_anchor, get_events):
    c = ledger_anchor
    assert c.functions.checkpointCount(LOG_A).call() == 0
    assert c.functions.latestTreeSize(LOG_A).call() == 0
    assert c.functions.anchor(LOG_A, 1, root(1)).call({"from": accounts.owner}) == 0
    receipt = chain.send(c.functions.anchor(LOG_A, 1, root(1)), accounts.owner)
    ts = chain.block_timestamp(receipt)
    assert get_events(c, "CheckpointAnchored", receipt) == [
        {
            "logId": LOG_A,
            "index": 0,
            "treeSize": 1,
            "rootHash": root(1),
            "anchoredAt": ts,
            "anchorer": accounts.owner,
        }
    ]
    expected = checkpoint(1, root(1), ts, receipt["blockNumber"])
    assert c.functions.checkpointCount(LOG_A).call() == 1
    assert c.functions.latestTreeSize(LOG_A).call() == 1
    assert c.functions.checkpointAt(LOG_A, 0).call() == expected
    assert c.functions.latestCheckpoint(LOG_A).call() == expected
    assert c.functions.findCheckpoint(LOG_A, 1).call() == [0, expected]


def test_first_anchor_must_have_positive_tree_size(chain, accounts, ledger_anchor):
    with chain.reverts(ledger_anchor, "TreeSizeNotIncreasing", LOG_A, 0, 0):
        chain.send(ledger_anchor.functions.anchor(LOG_A, 0, root(0)), accounts.owner)


def test_anchor_rejects_zero_root(chain, accounts, ledger_anchor):
    with chain.reverts(ledger_anchor, "ZeroRoot", LOG_A):
        chain.send(ledger_anchor.functions.anchor(LOG_A, 5, b"\x00" * 32), accounts.owner)


def test_tree_size_must_strictly_grow(chain, accounts, ledger_anchor, get_events):
    c = ledger_anchor
    chain.send(c.functions.anchor(LOG_A, 10, root(10)), accounts.owner)
    with chain.reverts(c, "TreeSizeNotIncreasing", LOG_A, 10, 10):
        chain.send(c.functions.anchor(LOG_A, 10, root(11)), accounts.owner)
    with chain.reverts(c, "TreeSizeNotIncreasing", LOG_A, 10, 9):
        chain.send(c.functions.anchor(LOG_A, 9, root(9)), accounts.owner)
    receipt = chain.send(c.functions.anchor(LOG_A, 11, root(11)), accounts.owner)
    (event,) = get_events(c, "CheckpointAnchored", receipt)
    assert (event["index"], event["treeSize"]) == (1, 11)
    assert c.functions.checkpointCount(LOG_A).call() == 2
    assert c.functions.latestTreeSize(LOG_A).call() == 11


def test_tree_size_up_to_uint64_max(chain, accounts, ledger_anchor):
    c = ledger_anchor
    chain.send(c.functions.anchor(LOG_A, UINT64_MAX, root(1)), accounts.owner)
    assert c.functions.latestTreeSize(LOG_A).call() == UINT64_MAX
    with chain.reverts(c, "TreeSizeNotIncreasing", LOG_A, UINT64_MAX, UINT64_MAX):
        chain.send(c.functions.anchor(LOG_A, UINT64_MAX, root(2)), accounts.owner)


def test_logs_are_independent(chain, accounts, ledger_anchor):
    c = ledger_anchor
    chain.send(c.functions.anchor(LOG_A, 100, root(100)), accounts.owner)
    # A smaller tree size is fine on another log, and its indexes start at 0.
    assert c.functions.anchor(LOG_B, 1, root(1)).call({"from": accounts.owner}) == 0
    chain.send(c.functions.anchor(LOG_B, 1, root(1)), accounts.owner)
    assert c.functions.checkpointCount(LOG_A).call() == 1
    assert c.functions.checkpointCount(LOG_B).call() == 1
    assert c.functions.latestCheckpoint(LOG_A).call()[0] == 100
    assert c.functions.latestCheckpoint(LOG_B).call()[0] == 1


def test_unauthorised_anchorer(chain, accounts, ledger_anchor):
    with chain.reverts(ledger_anchor, "NotAnchorer", accounts.stranger):
        chain.send(ledger_anchor.functions.anchor(LOG_A, 1, root(1)), accounts.stranger)
    assert ledger_anchor.functions.checkpointCount(LOG_A).call() == 0


def test_role_check_precedes_argument_checks(chain, accounts, ledger_anchor):
    with chain.reverts(ledger_anchor, "NotAnchorer", accounts.stranger):
        chain.send(ledger_anchor.functions.anchor(LOG_A, 0, b"\x00" * 32), accounts.stranger)


# ------------------------------------------------------------------------------ views


def test_checkpoint_at_out_of_range(chain, accounts, ledger_anchor):
    c = ledger_anchor
    with chain.reverts(c, "IndexOutOfRange", LOG_A, 0, 0):
        c.functions.checkpointAt(LOG_A, 0).call()
    for size in (1, 2, 3):
        chain.send(c.functions.anchor(LOG_A, size, root(size)), accounts.owner)
    assert c.functions.checkpointAt(LOG_A, 2).call()[0] == 3
    with chain.reverts(c, "IndexOutOfRange", LOG_A, 3, 3):
        c.functions.checkpointAt(LOG_A, 3).call()
    with chain.reverts(c, "IndexOutOfRange", LOG_A, 2**256 - 1, 3):
        c.functions.checkpointAt(LOG_A, 2**256 - 1).call()


def test_latest_checkpoint_without_checkpoints(chain, ledger_anchor):
    with chain.reverts(ledger_anchor, "NoCheckpoint", LOG_A):
        ledger_anchor.functions.latestCheckpoint(LOG_A).call()


def test_find_checkpoint_binary_search(chain, accounts, ledger_anchor):
    c = ledger_anchor
    sizes = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 1000, 10_000]
    expected = []
    for size in sizes:
        receipt = chain.send(c.functions.anchor(LOG_A, size, root(size)), accounts.owner)
        expected.append(
            checkpoint(size, root(size), chain.block_timestamp(receipt), receipt["blockNumber"])
        )
    for index, size in enumerate(sizes):
        assert c.functions.findCheckpoint(LOG_A, size).call() == [index, expected[index]]
        assert c.functions.checkpointAt(LOG_A, index).call() == expected[index]
    assert c.functions.latestCheckpoint(LOG_A).call() == expected[-1]
    for missing in (0, 4, 6, 50, 143, 145, 999, 10_001, UINT64_MAX):
        with chain.reverts(c, "CheckpointNotFound", LOG_A, missing):
            c.functions.findCheckpoint(LOG_A, missing).call()


def test_find_checkpoint_on_empty_log(chain, ledger_anchor):
    with chain.reverts(ledger_anchor, "CheckpointNotFound", LOG_B, 1):
        ledger_anchor.functions.findCheckpoint(LOG_B, 1).call()


# ------------------------------------------------------------------------------ anchorers


def test_grant_anchorer(chain, accounts, ledger_anchor, get_events):
    c = ledger_anchor
    assert c.functions.isAnchorer(accounts.anchorer).call() is False
    receipt = chain.send(c.functions.grantAnchorer(accounts.anchorer), accounts.owner)
    assert get_events(c, "AnchorerGranted", receipt) == [
        {"account": accounts.anchorer, "by": accounts.owner}
    ]
    assert c.functions.isAnchorer(accounts.anchorer).call() is True
    receipt = chain.send(c.functions.anchor(LOG_A, 7, root(7)), accounts.anchorer)
    (event,) = get_events(c, "CheckpointAnchored", receipt)
    assert event["anchorer"] == accounts.anchorer
    # Granting again changes nothing and emits nothing.
    receipt = chain.send(c.functions.grantAnchorer(accounts.anchorer), accounts.owner)
    assert receipt["logs"] == []
    assert c.functions.isAnchorer(accounts.anchorer).call() is True


def test_grant_anchorer_rejects_zero_address(chain, accounts, ledger_anchor):
    with chain.reverts(ledger_anchor, "ZeroAddress"):
        chain.send(ledger_anchor.functions.grantAnchorer(ZERO_ADDRESS), accounts.owner)


def test_only_owner_grants_and_revokes(chain, accounts, ledger_anchor):
    c = ledger_anchor
    chain.send(c.functions.grantAnchorer(accounts.anchorer), accounts.owner)
    # An anchorer is not an owner.
    with chain.reverts(c, "NotOwner", accounts.anchorer):
        chain.send(c.functions.grantAnchorer(accounts.stranger), accounts.anchorer)
    with chain.reverts(c, "NotOwner", accounts.stranger):
        chain.send(c.functions.grantAnchorer(accounts.stranger), accounts.stranger)
    with chain.reverts(c, "NotOwner", accounts.stranger):
        chain.send(c.functions.revokeAnchorer(accounts.anchorer), accounts.stranger)
    assert c.functions.isAnchorer(accounts.stranger).call() is False
    assert c.functions.isAnchorer(accounts.anchorer).call() is True


def test_revoke_anchorer(chain, accounts, ledger_anchor, get_events):
    c = ledger_anchor
    chain.send(c.functions.grantAnchorer(accounts.anchorer), accounts.owner)
    chain.send(c.functions.anchor(LOG_A, 1, root(1)), accounts.anchorer)
    receipt = chain.send(c.functions.revokeAnchorer(accounts.anchorer), accounts.owner)
    assert get_events(c, "AnchorerRevoked", receipt) == [
        {"account": accounts.anchorer, "by": accounts.owner}
    ]
    assert c.functions.isAnchorer(accounts.anchorer).call() is False
    with chain.reverts(c, "NotAnchorer", accounts.anchorer):
        chain.send(c.functions.anchor(LOG_A, 2, root(2)), accounts.anchorer)
    # Revoking again changes nothing and emits nothing.
    receipt = chain.send(c.functions.revokeAnchorer(accounts.anchorer), accounts.owner)
    assert receipt["logs"] == []
    # Checkpoints anchored before the revocation stay.
    assert c.functions.checkpointCount(LOG_A).call() == 1


def test_owner_can_revoke_its_own_anchorer_role(chain, accounts, ledger_anchor):
    c = ledger_anchor
    chain.send(c.functions.revokeAnchorer(accounts.owner), accounts.owner)
    assert c.functions.isAnchorer(accounts.owner).call() is False
    with chain.reverts(c, "NotAnchorer", accounts.owner):
        chain.send(c.functions.anchor(LOG_A, 1, root(1)), accounts.owner)
    assert c.functions.owner().call() == accounts.owner


# ------------------------------------------------------------------------------ ownership


def test_two_step_ownership_transfer(chain, accounts, ledger_anchor, get_events):
    c = ledger_anchor
    receipt = chain.send(c.functions.transferOwnership(accounts.new_owner), accounts.owner)
    assert get_events(c, "OwnershipTransferStarted", receipt) == [
        {"previousOwner": accounts.owner, "newOwner": accounts.new_owner}
    ]
    assert c.functions.owner().call() == accounts.owner
    assert c.functions.pendingOwner().call() == accounts.new_owner
    with chain.reverts(c, "NotPendingOwner", accounts.stranger):
        chain.send(c.functions.acceptOwnership(), accounts.stranger)
    with chain.reverts(c, "NotPendingOwner", accounts.owner):
        chain.send(c.functions.acceptOwnership(), accounts.owner)
    receipt = chain.send(c.functions.acceptOwnership(), accounts.new_owner)
    assert get_events(c, "OwnershipTransferred", receipt) == [
        {"previousOwner": accounts.owner, "newOwner": accounts.new_owner}
    ]
    assert c.functions.owner().call() == accounts.new_owner
    assert c.functions.pendingOwner().call() == ZERO_ADDRESS
    # The former owner lost owner rights (but keeps its anchorer role); the new owner is not
    # made an anchorer.
    with chain.reverts(c, "NotOwner", accounts.owner):
        chain.send(c.functions.grantAnchorer(accounts.anchorer), accounts.owner)
    assert c.functions.isAnchorer(accounts.owner).call() is True
    assert c.functions.isAnchorer(accounts.new_owner).call() is False
    chain.send(c.functions.grantAnchorer(accounts.anchorer), accounts.new_owner)
    assert c.functions.isAnchorer(accounts.anchorer).call() is True
    # Accepting twice is impossible.
    with chain.reverts(c, "NotPendingOwner", accounts.new_owner):
        chain.send(c.functions.acceptOwnership(), accounts.new_owner)


def test_transfer_ownership_only_owner(chain, accounts, ledger_anchor):
    with chain.reverts(ledger_anchor, "NotOwner", accounts.stranger):
        chain.send(ledger_anchor.functions.transferOwnership(accounts.stranger), accounts.stranger)


def test_transfer_ownership_to_zero_cancels(chain, accounts, ledger_anchor, get_events):
    c = ledger_anchor
    chain.send(c.functions.transferOwnership(accounts.new_owner), accounts.owner)
    receipt = chain.send(c.functions.transferOwnership(ZERO_ADDRESS), accounts.owner)
    assert get_events(c, "OwnershipTransferStarted", receipt) == [
        {"previousOwner": accounts.owner, "newOwner": ZERO_ADDRESS}
    ]
    assert c.functions.pendingOwner().call() == ZERO_ADDRESS
    with chain.reverts(c, "NotPendingOwner", accounts.new_owner):
        chain.send(c.functions.acceptOwnership(), accounts.new_owner)
    assert c.functions.owner().call() == accounts.owner


@pytest.mark.parametrize(
    "signature",
    [
        "anchor(bytes32,uint64,bytes32)",
        "checkpointCount(bytes32)",
        "checkpointAt(bytes32,uint256)",
        "latestCheckpoint(bytes32)",
        "findCheckpoint(bytes32,uint64)",
        "isAnchorer(address)",
        "grantAnchorer(address)",
        "revokeAnchorer(address)",
        "owner()",
        "pendingOwner()",
        "transferOwnership(address)",
        "acceptOwnership()",
    ],
)
def test_interface_is_exact(signature):
    """The interface the chain client codes against: these signatures must exist."""
    import json

    from evidence_ledger.ledger.contracts import BUILD_DIR

    data = json.loads((BUILD_DIR / "LedgerAnchor.json").read_text("utf-8"))
    assert signature in data["methodIdentifiers"]


def test_every_error_and_event_is_exercised_here():
    """Guard: each custom error and event of the ABI is named somewhere in this test module."""
    from pathlib import Path

    source = Path(__file__).read_text("utf-8")
    abi = load_artifact("LedgerAnchor").abi
    names = {item["name"] for item in abi if item["type"] in ("error", "event")}
    missing = sorted(n for n in names if f'"{n}"' not in source)
    assert missing == []
