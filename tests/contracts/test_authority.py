"""Authority: agencies, admins, keys, validity windows, revocation, ownership."""

from __future__ import annotations

import hashlib

import pytest

from evidence_ledger.ledger.contracts import load_artifact

ZERO_ADDRESS = "0x" + "00" * 20
ZERO32 = b"\x00" * 32
UINT64_MAX = 2**64 - 1

# enum AgencyKind
MARKET_REGULATION, TAX, HUMAN_RESOURCES, PUBLIC_SECURITY, COURT = range(5)
# enum Role
OFFICER, INSPECTOR, AUDITOR, ANCHORER, ADMIN = range(5)
# enum RevocationReason
UNSPECIFIED, KEY_COMPROMISE, AFFILIATION_CHANGED, SUPERSEDED, CESSATION = range(5)

AGENCY_A = hashlib.sha256(b"agency:SZ-AMR").digest()
AGENCY_B = hashlib.sha256(b"agency:SZ-TAX").digest()
AGENCY_UNKNOWN = hashlib.sha256(b"agency:unknown").digest()
MEMBER = hashlib.sha256(b"member:officer-0042").digest()


def public_key(n: int) -> bytes:
    return hashlib.sha256(b"pk" + n.to_bytes(4, "big")).digest()


def key_id(pk: bytes) -> bytes:
    return hashlib.sha256(pk).digest()


@pytest.fixture
def agencies(chain, accounts, authority):
    """AGENCY_A (market regulation, admin_a) and AGENCY_B (tax, admin_b)."""
    fn = authority.functions
    chain.send(fn.registerAgency(AGENCY_A, MARKET_REGULATION, "Market Regulation", accounts.admin_a), accounts.owner)
    chain.send(fn.registerAgency(AGENCY_B, TAX, "Tax Bureau", accounts.admin_b), accounts.owner)
    return authority


def register_key(chain, authority, sender, pk, *, agency=AGENCY_A, role=OFFICER, valid_from=0,
                 valid_until=UINT64_MAX, member=MEMBER):
    return chain.send(
        authority.functions.registerKey(agency, pk, member, role, valid_from, valid_until), sender
    )


# ------------------------------------------------------------------------------ deployment


def test_deployed_code_matches_artifact(chain, authority):
    assert chain.w3.eth.get_code(authority.address) == load_artifact("Authority").deployed_bytecode


def test_constructor(chain, accounts, get_events):
    contract = chain.deploy("Authority", accounts.deployer, accounts.owner)
    assert contract.functions.owner().call() == accounts.owner
    assert contract.functions.pendingOwner().call() == ZERO_ADDRESS
    assert contract.functions.agencyIds().call() == []
    assert get_events(contract, "OwnershipTransferred", contract.deploy_receipt) == [
        {"previousOwner": ZERO_ADDRESS, "newOwner": accounts.owner}
    ]


def test_constructor_rejects_zero_owner(chain, accounts, authority):
    with chain.reverts(authority, "ZeroAddress"):
        chain.deploy("Authority", accounts.deployer, ZERO_ADDRESS)


def test_compute_key_id_is_sha256(authority):
    for n in range(3):
        pk = public_key(n)
        assert authority.functions.computeKeyId(pk).call() == key_id(pk)


# ------------------------------------------------------------------------------ agencies


def test_register_agency(chain, accounts, authority, get_events):
    fn = authority.functions
    receipt = chain.send(fn.registerAgency(AGENCY_A, PUBLIC_SECURITY, "Public Security Bureau", accounts.admin_a), accounts.owner)
    ts = chain.block_timestamp(receipt)
    assert get_events(authority, "AgencyRegistered", receipt) == [
        {"agencyId": AGENCY_A, "kind": PUBLIC_SECURITY, "name": "Public Security Bureau", "admin": accounts.admin_a}
    ]
    assert get_events(authority, "AgencyAdminSet", receipt) == [
        {"agencyId": AGENCY_A, "previousAdmin": ZERO_ADDRESS, "newAdmin": accounts.admin_a}
    ]
    assert fn.getAgency(AGENCY_A).call() == (PUBLIC_SECURITY, True, accounts.admin_a, ts, "Public Security Bureau")
    assert fn.agencyIds().call() == [AGENCY_A]
    assert fn.agencyActiveAt(AGENCY_A, ts).call() is True
    assert fn.agencyActiveAt(AGENCY_A, ts - 1).call() is False


def test_register_every_agency_kind(chain, accounts, authority):
    ids = []
    for kind in (MARKET_REGULATION, TAX, HUMAN_RESOURCES, PUBLIC_SECURITY, COURT):
        agency_id = hashlib.sha256(b"kind" + bytes([kind])).digest()
        chain.send(authority.functions.registerAgency(agency_id, kind, f"agency {kind}", accounts.admin_a), accounts.owner)
        assert authority.functions.getAgency(agency_id).call()[0] == kind
        ids.append(agency_id)
    assert authority.functions.agencyIds().call() == ids


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((ZERO32, TAX, "x", "admin"), ("InvalidAgencyId", ZERO32)),
        ((AGENCY_A, 5, "x", "admin"), ("InvalidAgencyKind", 5)),
        ((AGENCY_A, 255, "x", "admin"), ("InvalidAgencyKind", 255)),
        ((AGENCY_A, TAX, "", "admin"), ("EmptyAgencyName", AGENCY_A)),
        ((AGENCY_A, TAX, "x", ZERO_ADDRESS), ("ZeroAddress",)),
    ],
)
def test_register_agency_rejects_bad_arguments(chain, accounts, authority, args, error):
    agency_id, kind, name, admin = args
    admin = accounts.admin_a if admin == "admin" else admin
    with chain.reverts(authority, *error):
        chain.send(authority.functions.registerAgency(agency_id, kind, name, admin), accounts.owner)


def test_register_agency_twice(chain, accounts, agencies):
    with chain.reverts(agencies, "AgencyAlreadyRegistered", AGENCY_A):
        chain.send(agencies.functions.registerAgency(AGENCY_A, COURT, "Court", accounts.admin_b), accounts.owner)


def test_register_agency_only_owner(chain, accounts, authority):
    with chain.reverts(authority, "NotOwner", accounts.stranger):
        chain.send(authority.functions.registerAgency(AGENCY_A, TAX, "x", accounts.stranger), accounts.stranger)


def test_get_agency_unknown(chain, authority):
    with chain.reverts(authority, "AgencyNotFound", AGENCY_UNKNOWN):
        authority.functions.getAgency(AGENCY_UNKNOWN).call()
    assert authority.functions.agencyActiveAt(AGENCY_UNKNOWN, UINT64_MAX).call() is False


def test_set_agency_status(chain, accounts, agencies, get_events):
    fn = agencies.functions
    receipt = chain.send(fn.setAgencyStatus(AGENCY_A, False), accounts.owner)
    ts = chain.block_timestamp(receipt)
    assert get_events(agencies, "AgencyStatusChanged", receipt) == [
        {"agencyId": AGENCY_A, "active": False, "at": ts}
    ]
    assert fn.getAgency(AGENCY_A).call()[1] is False
    # Unchanged status: no-op, no event.
    assert chain.send(fn.setAgencyStatus(AGENCY_A, False), accounts.owner)["logs"] == []
    receipt = chain.send(fn.setAgencyStatus(AGENCY_A, True), accounts.owner)
    assert get_events(agencies, "AgencyStatusChanged", receipt) == [
        {"agencyId": AGENCY_A, "active": True, "at": chain.block_timestamp(receipt)}
    ]
    assert fn.getAgency(AGENCY_A).call()[1] is True
    # The other agency is unaffected.
    assert fn.getAgency(AGENCY_B).call()[1] is True


def test_set_agency_status_errors(chain, accounts, agencies):
    with chain.reverts(agencies, "NotOwner", accounts.admin_a):
        chain.send(agencies.functions.setAgencyStatus(AGENCY_A, False), accounts.admin_a)
    with chain.reverts(agencies, "AgencyNotFound", AGENCY_UNKNOWN):
        chain.send(agencies.functions.setAgencyStatus(AGENCY_UNKNOWN, False), accounts.owner)


def test_set_agency_admin(chain, accounts, agencies, get_events):
    fn = agencies.functions
    receipt = chain.send(fn.setAgencyAdmin(AGENCY_A, accounts.stranger), accounts.owner)
    assert get_events(agencies, "AgencyAdminSet", receipt) == [
        {"agencyId": AGENCY_A, "previousAdmin": accounts.admin_a, "newAdmin": accounts.stranger}
    ]
    assert fn.getAgency(AGENCY_A).call()[2] == accounts.stranger
    # The former admin can no longer register keys; the new one can.
    with chain.reverts(agencies, "NotAgencyAdmin", AGENCY_A, accounts.admin_a):
        register_key(chain, agencies, accounts.admin_a, public_key(1))
    register_key(chain, agencies, accounts.stranger, public_key(1))
    # Unchanged admin: no-op, no event.
    assert chain.send(fn.setAgencyAdmin(AGENCY_A, accounts.stranger), accounts.owner)["logs"] == []
    # Zero removes the admin: nobody can register keys.
    receipt = chain.send(fn.setAgencyAdmin(AGENCY_A, ZERO_ADDRESS), accounts.owner)
    assert get_events(agencies, "AgencyAdminSet", receipt) == [
        {"agencyId": AGENCY_A, "previousAdmin": accounts.stranger, "newAdmin": ZERO_ADDRESS}
    ]
    with chain.reverts(agencies, "NotAgencyAdmin", AGENCY_A, accounts.stranger):
        register_key(chain, agencies, accounts.stranger, public_key(2))


def test_set_agency_admin_errors(chain, accounts, agencies):
    with chain.reverts(agencies, "NotOwner", accounts.admin_a):
        chain.send(agencies.functions.setAgencyAdmin(AGENCY_A, accounts.admin_b), accounts.admin_a)
    with chain.reverts(agencies, "AgencyNotFound", AGENCY_UNKNOWN):
        chain.send(agencies.functions.setAgencyAdmin(AGENCY_UNKNOWN, accounts.admin_b), accounts.owner)


# ------------------------------------------------------------------------------ keys


def test_register_key(chain, accounts, agencies, get_events):
    fn = agencies.functions
    pk = public_key(1)
    start = chain.latest_timestamp() + 100
    until = start + 1000
    assert fn.registerKey(AGENCY_A, pk, MEMBER, INSPECTOR, start, until).call({"from": accounts.admin_a}) == key_id(pk)
    receipt = register_key(chain, agencies, accounts.admin_a, pk, role=INSPECTOR, valid_from=start, valid_until=until)
    assert get_events(agencies, "KeyRegistered", receipt) == [
        {
            "keyId": key_id(pk),
            "agencyId": AGENCY_A,
            "memberId": MEMBER,
            "publicKey": pk,
            "role": INSPECTOR,
            "validFrom": start,
            "validUntil": until,
        }
    ]
    assert fn.getKey(key_id(pk)).call() == (pk, AGENCY_A, MEMBER, INSPECTOR, start, until, 0, UNSPECIFIED)
    assert fn.agencyKeyIds(AGENCY_A).call() == [key_id(pk)]
    assert fn.agencyKeyIds(AGENCY_B).call() == []


def test_register_key_cannot_be_backdated(chain, accounts, agencies, get_events):
    fn = agencies.functions
    for n, requested in ((1, 0), (2, chain.latest_timestamp() - 10_000)):
        receipt = register_key(chain, agencies, accounts.admin_a, public_key(n), valid_from=requested)
        ts = chain.block_timestamp(receipt)
        (event,) = get_events(agencies, "KeyRegistered", receipt)
        assert event["validFrom"] == ts
        assert fn.getKey(key_id(public_key(n))).call()[4] == ts
        assert fn.wasAuthorized(key_id(public_key(n)), OFFICER, ts - 1).call() is False
        assert fn.wasAuthorized(key_id(public_key(n)), OFFICER, ts).call() is True


def test_register_key_every_role(chain, accounts, agencies):
    for role in (OFFICER, INSPECTOR, AUDITOR, ANCHORER, ADMIN):
        register_key(chain, agencies, accounts.admin_a, public_key(10 + role), role=role)
        assert agencies.functions.getKey(key_id(public_key(10 + role))).call()[3] == role


def test_register_key_permissions(chain, accounts, agencies):
    pk = public_key(1)
    # Not the admin of that agency: a stranger, the other agency's admin, the owner.
    for caller in (accounts.stranger, accounts.admin_b, accounts.owner):
        with chain.reverts(agencies, "NotAgencyAdmin", AGENCY_A, caller):
            register_key(chain, agencies, caller, pk)
    with chain.reverts(agencies, "AgencyNotFound", AGENCY_UNKNOWN):
        register_key(chain, agencies, accounts.admin_a, pk, agency=AGENCY_UNKNOWN)


def test_register_key_for_inactive_agency(chain, accounts, agencies):
    chain.send(agencies.functions.setAgencyStatus(AGENCY_A, False), accounts.owner)
    with chain.reverts(agencies, "AgencyInactive", AGENCY_A):
        register_key(chain, agencies, accounts.admin_a, public_key(1))


def test_register_key_argument_errors(chain, accounts, agencies):
    with chain.reverts(agencies, "InvalidPublicKey", ZERO32):
        register_key(chain, agencies, accounts.admin_a, ZERO32)
    with chain.reverts(agencies, "InvalidRole", 5):
        register_key(chain, agencies, accounts.admin_a, public_key(1), role=5)
    with chain.reverts(agencies, "InvalidRole", 255):
        register_key(chain, agencies, accounts.admin_a, public_key(1), role=255)


def test_register_key_validity_window_boundaries(chain, accounts, agencies):
    now = chain.latest_timestamp()
    start = now + 1000
    # Empty window (until == start) and inverted window are rejected.
    with chain.reverts(agencies, "InvalidValidityWindow", start, start):
        register_key(chain, agencies, accounts.admin_a, public_key(1), valid_from=start, valid_until=start)
    with chain.reverts(agencies, "InvalidValidityWindow", start, start - 1):
        register_key(chain, agencies, accounts.admin_a, public_key(1), valid_from=start, valid_until=start - 1)
    # A back-dated start is clamped to the block time before the window is checked.
    block_time = now + 50
    chain.next_block_at(block_time)
    with chain.reverts(agencies, "InvalidValidityWindow", block_time, block_time):
        register_key(chain, agencies, accounts.admin_a, public_key(1), valid_from=0, valid_until=block_time)
    # The smallest window (one second) is accepted.
    register_key(chain, agencies, accounts.admin_a, public_key(1), valid_from=start, valid_until=start + 1)
    key = key_id(public_key(1))
    fn = agencies.functions
    assert fn.wasAuthorized(key, OFFICER, start - 1).call() is False
    assert fn.wasAuthorized(key, OFFICER, start).call() is True
    assert fn.wasAuthorized(key, OFFICER, start + 1).call() is False


def test_register_key_twice(chain, accounts, agencies):
    pk = public_key(1)
    register_key(chain, agencies, accounts.admin_a, pk)
    with chain.reverts(agencies, "KeyAlreadyRegistered", key_id(pk)):
        register_key(chain, agencies, accounts.admin_a, pk, role=AUDITOR)
    # Not in another agency either, nor after revocation.
    with chain.reverts(agencies, "KeyAlreadyRegistered", key_id(pk)):
        register_key(chain, agencies, accounts.admin_b, pk, agency=AGENCY_B)
    chain.send(agencies.functions.revokeKey(key_id(pk), SUPERSEDED), accounts.admin_a)
    with chain.reverts(agencies, "KeyAlreadyRegistered", key_id(pk)):
        register_key(chain, agencies, accounts.admin_a, pk)


def test_get_key_unknown(chain, authority):
    with chain.reverts(authority, "KeyNotFound", key_id(public_key(99))):
        authority.functions.getKey(key_id(public_key(99))).call()


# ------------------------------------------------------------------------------ revocation


def test_revoke_key_by_agency_admin(chain, accounts, agencies, get_events):
    pk = public_key(1)
    register_key(chain, agencies, accounts.admin_a, pk, member=ZERO32)
    receipt = chain.send(agencies.functions.revokeKey(key_id(pk), KEY_COMPROMISE), accounts.admin_a)
    ts = chain.block_timestamp(receipt)
    assert get_events(agencies, "KeyRevoked", receipt) == [
        {"keyId": key_id(pk), "agencyId": AGENCY_A, "reason": KEY_COMPROMISE, "revokedAt": ts, "by": accounts.admin_a}
    ]
    key = agencies.functions.getKey(key_id(pk)).call()
    assert (key[6], key[7]) == (ts, KEY_COMPROMISE)


def test_revoke_key_by_owner(chain, accounts, agencies, get_events):
    pk = public_key(1)
    register_key(chain, agencies, accounts.admin_a, pk)
    receipt = chain.send(agencies.functions.revokeKey(key_id(pk), CESSATION), accounts.owner)
    (event,) = get_events(agencies, "KeyRevoked", receipt)
    assert (event["by"], event["reason"]) == (accounts.owner, CESSATION)


def test_revoke_key_errors(chain, accounts, agencies):
    pk = public_key(1)
    kid = key_id(pk)
    with chain.reverts(agencies, "KeyNotFound", kid):
        chain.send(agencies.functions.revokeKey(kid, UNSPECIFIED), accounts.admin_a)
    register_key(chain, agencies, accounts.admin_a, pk)
    for caller in (accounts.stranger, accounts.admin_b):
        with chain.reverts(agencies, "NotAgencyAdmin", AGENCY_A, caller):
            chain.send(agencies.functions.revokeKey(kid, UNSPECIFIED), caller)
    with chain.reverts(agencies, "InvalidRevocationReason", 5):
        chain.send(agencies.functions.revokeKey(kid, 5), accounts.admin_a)
    receipt = chain.send(agencies.functions.revokeKey(kid, AFFILIATION_CHANGED), accounts.admin_a)
    revoked_at = chain.block_timestamp(receipt)
    with chain.reverts(agencies, "KeyAlreadyRevoked", kid, revoked_at):
        chain.send(agencies.functions.revokeKey(kid, KEY_COMPROMISE), accounts.admin_a)
    with chain.reverts(agencies, "KeyAlreadyRevoked", kid, revoked_at):
        chain.send(agencies.functions.revokeKey(kid, KEY_COMPROMISE), accounts.owner)
    # The first revocation stands.
    assert agencies.functions.getKey(kid).call()[6:] == (revoked_at, AFFILIATION_CHANGED)


def test_revoke_key_of_inactive_agency(chain, accounts, agencies):
    register_key(chain, agencies, accounts.admin_a, public_key(1))
    chain.send(agencies.functions.setAgencyStatus(AGENCY_A, False), accounts.owner)
    chain.send(agencies.functions.revokeKey(key_id(public_key(1)), SUPERSEDED), accounts.admin_a)
    assert agencies.functions.getKey(key_id(public_key(1))).call()[7] == SUPERSEDED


# ------------------------------------------------------------------------------ wasAuthorized


def test_was_authorized_validity_window_boundaries(chain, accounts, agencies):
    fn = agencies.functions
    start = chain.latest_timestamp() + 100
    until = start + 1000
    register_key(chain, agencies, accounts.admin_a, public_key(1), role=INSPECTOR, valid_from=start, valid_until=until)
    kid = key_id(public_key(1))
    expectations = {
        start - 1: False,
        start: True,
        start + 1: True,
        until - 1: True,
        until: False,
        until + 1: False,
    }
    for at, expected in expectations.items():
        assert fn.wasAuthorized(kid, INSPECTOR, at).call() is expected, at


def test_was_authorized_role_must_match(chain, accounts, agencies):
    fn = agencies.functions
    receipt = register_key(chain, agencies, accounts.admin_a, public_key(1), role=AUDITOR)
    ts = chain.block_timestamp(receipt)
    kid = key_id(public_key(1))
    assert fn.wasAuthorized(kid, AUDITOR, ts).call() is True
    for role in (OFFICER, INSPECTOR, ANCHORER, ADMIN, 5, 255):
        assert fn.wasAuthorized(kid, role, ts).call() is False


def test_was_authorized_unknown_key(authority):
    assert authority.functions.wasAuthorized(key_id(public_key(1)), OFFICER, 10**9).call() is False
    assert authority.functions.wasAuthorized(ZERO32, OFFICER, 0).call() is False


def test_was_authorized_revocation_boundaries(chain, accounts, agencies):
    fn = agencies.functions
    receipt = register_key(chain, agencies, accounts.admin_a, public_key(1))
    registered = chain.block_timestamp(receipt)
    kid = key_id(public_key(1))
    revoke_time = registered + 500
    chain.next_block_at(revoke_time)
    receipt = chain.send(fn.revokeKey(kid, KEY_COMPROMISE), accounts.admin_a)
    assert chain.block_timestamp(receipt) == revoke_time
    assert fn.getKey(kid).call()[6] == revoke_time
    assert fn.wasAuthorized(kid, OFFICER, registered).call() is True
    assert fn.wasAuthorized(kid, OFFICER, revoke_time - 1).call() is True
    assert fn.wasAuthorized(kid, OFFICER, revoke_time).call() is False
    assert fn.wasAuthorized(kid, OFFICER, revoke_time + 1).call() is False
    assert fn.wasAuthorized(kid, OFFICER, UINT64_MAX).call() is False


def test_was_authorized_revoked_before_validity_starts(chain, accounts, agencies):
    fn = agencies.functions
    start = chain.latest_timestamp() + 1000
    register_key(chain, agencies, accounts.admin_a, public_key(1), valid_from=start, valid_until=start + 1000)
    kid = key_id(public_key(1))
    chain.send(fn.revokeKey(kid, SUPERSEDED), accounts.admin_a)
    for at in (start - 1, start, start + 999):
        assert fn.wasAuthorized(kid, OFFICER, at).call() is False


def test_was_authorized_follows_agency_status_history(chain, accounts, agencies):
    fn = agencies.functions
    receipt = register_key(chain, agencies, accounts.admin_a, public_key(1))
    registered = chain.block_timestamp(receipt)
    kid = key_id(public_key(1))
    deactivated = registered + 100
    reactivated = registered + 200
    chain.next_block_at(deactivated)
    chain.send(fn.setAgencyStatus(AGENCY_A, False), accounts.owner)
    chain.next_block_at(reactivated)
    chain.send(fn.setAgencyStatus(AGENCY_A, True), accounts.owner)
    expectations = {
        registered: True,
        deactivated - 1: True,
        deactivated: False,
        reactivated - 1: False,
        reactivated: True,
        reactivated + 10_000: True,
    }
    for at, expected in expectations.items():
        assert fn.wasAuthorized(kid, OFFICER, at).call() is expected, at
        assert fn.agencyActiveAt(AGENCY_A, at).call() is expected, at
    # Another agency's status does not matter.
    chain.send(fn.setAgencyStatus(AGENCY_B, False), accounts.owner)
    assert fn.wasAuthorized(kid, OFFICER, reactivated + 10_000).call() is True


def test_was_authorized_before_agency_registration(chain, accounts, agencies):
    registered = agencies.functions.getAgency(AGENCY_A).call()[3]
    assert agencies.functions.agencyActiveAt(AGENCY_A, registered - 1).call() is False
    assert agencies.functions.agencyActiveAt(AGENCY_A, registered).call() is True


def test_keys_of_several_agencies(chain, accounts, agencies):
    fn = agencies.functions
    register_key(chain, agencies, accounts.admin_a, public_key(1))
    register_key(chain, agencies, accounts.admin_b, public_key(2), agency=AGENCY_B, role=AUDITOR)
    register_key(chain, agencies, accounts.admin_a, public_key(3), role=ANCHORER)
    assert fn.agencyKeyIds(AGENCY_A).call() == [key_id(public_key(1)), key_id(public_key(3))]
    assert fn.agencyKeyIds(AGENCY_B).call() == [key_id(public_key(2))]
    # admin_a cannot revoke agency B's key.
    with chain.reverts(agencies, "NotAgencyAdmin", AGENCY_B, accounts.admin_a):
        chain.send(fn.revokeKey(key_id(public_key(2)), UNSPECIFIED), accounts.admin_a)


# ------------------------------------------------------------------------------ ownership


def test_two_step_ownership_transfer(chain, accounts, authority, get_events):
    fn = authority.functions
    with chain.reverts(authority, "NotOwner", accounts.stranger):
        chain.send(fn.transferOwnership(accounts.stranger), accounts.stranger)
    receipt = chain.send(fn.transferOwnership(accounts.new_owner), accounts.owner)
    assert get_events(authority, "OwnershipTransferStarted", receipt) == [
        {"previousOwner": accounts.owner, "newOwner": accounts.new_owner}
    ]
    assert fn.pendingOwner().call() == accounts.new_owner
    with chain.reverts(authority, "NotPendingOwner", accounts.stranger):
        chain.send(fn.acceptOwnership(), accounts.stranger)
    receipt = chain.send(fn.acceptOwnership(), accounts.new_owner)
    assert get_events(authority, "OwnershipTransferred", receipt) == [
        {"previousOwner": accounts.owner, "newOwner": accounts.new_owner}
    ]
    assert fn.owner().call() == accounts.new_owner
    assert fn.pendingOwner().call() == ZERO_ADDRESS
    with chain.reverts(authority, "NotOwner", accounts.owner):
        chain.send(fn.registerAgency(AGENCY_A, TAX, "Tax", accounts.admin_a), accounts.owner)
    chain.send(fn.registerAgency(AGENCY_A, TAX, "Tax", accounts.admin_a), accounts.new_owner)


def test_transfer_ownership_to_zero_cancels(chain, accounts, authority):
    fn = authority.functions
    chain.send(fn.transferOwnership(accounts.new_owner), accounts.owner)
    chain.send(fn.transferOwnership(ZERO_ADDRESS), accounts.owner)
    assert fn.pendingOwner().call() == ZERO_ADDRESS
    with chain.reverts(authority, "NotPendingOwner", accounts.new_owner):
        chain.send(fn.acceptOwnership(), accounts.new_owner)


def test_every_error_and_event_is_exercised_here():
    """Guard: each custom error and event of the ABI is named somewhere in this test module."""
    from pathlib import Path

    source = Path(__file__).read_text("utf-8")
    abi = load_artifact("Authority").abi
    names = {item["name"] for item in abi if item["type"] in ("error", "event")}
    missing = sorted(n for n in names if f'"{n}"' not in source)
    assert missing == []
