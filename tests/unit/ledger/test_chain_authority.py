"""Authority calls of the web3 chain client, on the in-process chain."""

from __future__ import annotations

import hashlib
import os

import pytest

from evidence_ledger.ledger.chain import Web3Chain, address_of_account, memory_chain
from evidence_ledger.ledger.errors import ContractRevertError

OFFICER, ADMIN_ROLE = 0, 4
MARKET, TAX = 0, 1


@pytest.fixture(scope="module")
def chain() -> Web3Chain:
    c = memory_chain()
    yield c
    c.close()


def _id(label: str) -> bytes:
    return hashlib.sha256(f"{label}/{os.urandom(4).hex()}".encode()).digest()


def _now(chain: Web3Chain) -> int:
    return int(chain.w3.eth.get_block("latest")["timestamp"])


def _second_key(chain: Web3Chain) -> str:
    # eth-tester funds ten accounts; the client signs with the first.
    return "0x" + chain.w3.provider.ethereum_tester.backend.account_keys[1].to_bytes().hex()


def test_service_account_is_owner_and_admin(chain: Web3Chain) -> None:
    agency = _id("agency")
    chain.register_agency(agency, MARKET, "Shenzhen Market Regulation")
    got = chain.get_agency(agency)
    assert got.admin == chain.address == chain.authority_owner()
    assert got.active and got.kind == MARKET and got.name == "Shenzhen Market Regulation"

    public_key, member = os.urandom(32), _id("member")
    key_id = chain.register_key(agency, public_key, member, OFFICER)
    assert key_id == hashlib.sha256(public_key).digest()
    key = chain.get_key(key_id)
    assert (key.public_key, key.agency_id, key.member_id, key.role) == (public_key, agency, member, OFFICER)
    assert key.valid_until == 2**64 - 1 and key.revoked_at == 0
    t = key.valid_from
    assert chain.was_authorized(key_id, OFFICER, t)
    assert not chain.was_authorized(key_id, ADMIN_ROLE, t)  # another role
    assert not chain.was_authorized(key_id, OFFICER, t - 1)  # before registration: never back-dated

    chain.revoke_key(key_id, 1)
    revoked = chain.get_key(key_id)
    assert revoked.revoked_at >= t and revoked.revocation_reason == 1
    assert chain.was_authorized(key_id, OFFICER, revoked.revoked_at - 1) or revoked.revoked_at == t
    assert not chain.was_authorized(key_id, OFFICER, revoked.revoked_at)
    with pytest.raises(ContractRevertError) as e:
        chain.revoke_key(key_id, 1)
    assert e.value.error_name == "KeyAlreadyRevoked"


def test_agency_status_history_and_unknown_keys(chain: Web3Chain) -> None:
    agency = _id("agency")
    chain.register_agency(agency, TAX, "Kunshan Tax Bureau")
    key_id = chain.register_key(agency, os.urandom(32), bytes(32), OFFICER)
    chain.set_agency_status(agency, False)
    after = _now(chain)
    assert not chain.get_agency(agency).active
    assert not chain.was_authorized(key_id, OFFICER, after)
    with pytest.raises(ContractRevertError) as e:
        chain.register_key(agency, os.urandom(32), bytes(32), OFFICER)
    assert e.value.error_name == "AgencyInactive"
    assert not chain.was_authorized(os.urandom(32), OFFICER, after)
    with pytest.raises(ContractRevertError) as e:
        chain.get_key(os.urandom(32))
    assert e.value.error_name == "KeyNotFound"
    with pytest.raises(ContractRevertError) as e:
        chain.register_agency(agency, TAX, "again")
    assert e.value.error_name == "AgencyAlreadyRegistered"


def test_agency_with_its_own_admin_signs_with_that_key(chain: Web3Chain) -> None:
    admin_key = _second_key(chain)
    admin = address_of_account(admin_key)
    assert admin != chain.address
    agency = _id("agency")
    chain.register_agency(agency, MARKET, "Minhang Market Regulation", admin)
    with pytest.raises(ContractRevertError) as e:  # the service account is not this agency's admin
        chain.register_key(agency, os.urandom(32), bytes(32), OFFICER)
    assert e.value.error_name == "NotAgencyAdmin"
    key_id = chain.register_key(agency, os.urandom(32), bytes(32), OFFICER, private_key=admin_key)
    assert chain.get_key(key_id).agency_id == agency
    chain.revoke_key(key_id, 3, private_key=admin_key)
    assert chain.get_key(key_id).revocation_reason == 3
    assert chain.address == chain.account.address  # the client's own account is untouched


def test_validity_window_and_bad_input(chain: Web3Chain) -> None:
    agency = _id("agency")
    chain.register_agency(agency, MARKET, "Window Agency")
    now = _now(chain)
    key_id = chain.register_key(agency, os.urandom(32), bytes(32), OFFICER, now + 100, now + 200)
    assert not chain.was_authorized(key_id, OFFICER, now + 99)
    assert chain.was_authorized(key_id, OFFICER, now + 100)
    assert not chain.was_authorized(key_id, OFFICER, now + 200)
    assert not chain.was_authorized(key_id, OFFICER, -1)
    with pytest.raises(ContractRevertError) as e:
        chain.register_key(agency, os.urandom(32), bytes(32), OFFICER, now + 10, now)
    assert e.value.error_name == "InvalidValidityWindow"
    with pytest.raises(ValueError):
        chain.register_key(agency, b"short", bytes(32), OFFICER)
