"""Fixtures for the contract tests: an in-process py-evm chain with both contracts deployed.

The chain and the deployments are made once per session; every test runs against a snapshot
that is reverted afterwards, so tests are isolated and fast.

Reverts are asserted by custom error name *and* arguments: the revert data is recovered from the
exception (web3 ``ContractLogicError.data`` on a JSON-RPC node, or the exception chain raised by
``EthereumTesterProvider``) and decoded against the contract's ABI.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak, to_checksum_address
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from evidence_ledger.ledger.contracts import load_artifact

ZERO_ADDRESS = "0x" + "00" * 20
SEND_GAS = 3_000_000

_BUILTIN_ERRORS = {
    keccak(text="Error(string)")[:4]: ("Error", ["string"]),
    keccak(text="Panic(uint256)")[:4]: ("Panic", ["uint256"]),
}


def _abi_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][len('tuple'):]}"
    return param["type"]


def error_table(abi: list[dict[str, Any]]) -> dict[bytes, tuple[str, list[str]]]:
    """Selector (first 4 bytes of keccak of the error signature) -> (name, argument types)."""
    table = dict(_BUILTIN_ERRORS)
    for item in abi:
        if item.get("type") == "error":
            types = [_abi_type(p) for p in item["inputs"]]
            signature = f"{item['name']}({','.join(types)})"
            table[keccak(text=signature)[:4]] = (item["name"], types)
    return table


def _normalise(value: Any, abi_type: str) -> Any:
    if abi_type == "address":
        return to_checksum_address(value)
    return value


def decode_revert(abi: list[dict[str, Any]], data: bytes) -> tuple[str, tuple[Any, ...]]:
    """Decodes revert data into (error name, arguments); addresses are checksummed."""
    if len(data) < 4:
        raise AssertionError(f"revert data too short to hold a selector: {data.hex()}")
    table = error_table(abi)
    selector = bytes(data[:4])
    if selector not in table:
        raise AssertionError(f"unknown error selector 0x{selector.hex()} (data 0x{data.hex()})")
    name, types = table[selector]
    values = abi_decode(types, bytes(data[4:]), strict=True)
    # Canonical encoding: re-encoding gives back the data exactly (no trailing garbage).
    assert abi_encode(types, values) == bytes(data[4:]), "non-canonical revert data"
    return name, tuple(_normalise(v, t) for v, t in zip(values, types, strict=True))


_BYTES_REPR = re.compile(r"""b(['"]).*\1""", re.DOTALL)


def revert_data(exc: BaseException) -> bytes:
    """The raw revert data carried by ``exc`` or by an exception in its cause/context chain."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    texts: list[str] = []
    while stack:
        current = stack.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        data = getattr(current, "data", None)
        if isinstance(current, ContractLogicError) and isinstance(data, str) and data.startswith("0x"):
            return bytes.fromhex(data[2:])
        for arg in current.args:
            if isinstance(arg, bytes | bytearray):
                return bytes(arg)
            if isinstance(arg, BaseException):
                stack.append(arg)
            elif isinstance(arg, str):
                texts.append(arg)
        stack.extend([current.__cause__, current.__context__])
    for text in texts:  # eth-tester stringifies the bytes: "execution reverted: b'...'"
        match = _BYTES_REPR.search(text)
        if match:
            return ast.literal_eval(match.group(0))
    raise AssertionError(f"no revert data found in {exc!r}")


@dataclass
class Chain:
    """The test chain and helpers around it."""

    w3: Web3

    @property
    def tester(self) -> Any:
        return self.w3.provider.ethereum_tester  # type: ignore[attr-defined]

    def latest_timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def next_block_at(self, timestamp: int) -> None:
        """Makes the next mined block have exactly ``timestamp`` (must be in the future)."""
        assert timestamp > self.latest_timestamp(), "can only travel forward"
        self.tester.time_travel(timestamp)

    def send(self, fn: Any, sender: str) -> Any:
        """Sends a contract function call as a transaction; returns the successful receipt.

        The call is first simulated with ``eth_call`` against the pending block, which raises
        with the revert data if it would revert; the transaction then gets a fixed gas limit,
        skipping py-evm's gas estimation (a binary search that re-executes it a dozen times).
        """
        fn.call({"from": sender}, block_identifier="pending")
        tx_hash = fn.transact({"from": sender, "gas": SEND_GAS})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return receipt

    def block_timestamp(self, receipt: Any) -> int:
        return int(self.w3.eth.get_block(receipt["blockNumber"])["timestamp"])

    def deploy(self, name: str, sender: str, *args: Any) -> Contract:
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx_hash = factory.constructor(*args).transact({"from": sender})  # estimates gas
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        contract = self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)
        contract.deploy_receipt = receipt  # type: ignore[attr-defined]
        return contract

    @contextmanager
    def reverts(self, abi_source: Any, name: str, *args: Any) -> Iterator[None]:
        """Asserts the block raises a revert with custom error ``name(*args)``.

        ``abi_source`` is a contract (or an ABI list) to decode the error against.
        """
        abi = abi_source if isinstance(abi_source, list) else abi_source.abi
        with pytest.raises((TransactionFailed, ContractLogicError)) as info:
            yield
        assert decode_revert(abi, revert_data(info.value)) == (name, tuple(args))


def events(contract: Contract, name: str, receipt: Any) -> list[dict[str, Any]]:
    """The arguments of every ``name`` event the contract emitted in ``receipt``."""
    decoded = getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD)
    return [dict(e["args"]) for e in decoded]


@dataclass(frozen=True)
class Accounts:
    owner: str
    anchorer: str
    stranger: str
    new_owner: str
    admin_a: str
    admin_b: str
    deployer: str


@pytest.fixture(scope="session")
def _session_chain() -> Chain:
    return Chain(Web3(EthereumTesterProvider()))


@pytest.fixture(scope="session")
def accounts(_session_chain: Chain) -> Accounts:
    a = _session_chain.w3.eth.accounts
    return Accounts(
        owner=a[0], anchorer=a[1], stranger=a[2], new_owner=a[3], admin_a=a[4], admin_b=a[5],
        deployer=a[6],
    )


@pytest.fixture(scope="session")
def _deployed(_session_chain: Chain, accounts: Accounts) -> dict[str, Contract]:
    return {
        "LedgerAnchor": _session_chain.deploy("LedgerAnchor", accounts.owner, accounts.owner),
        "Authority": _session_chain.deploy("Authority", accounts.owner, accounts.owner),
    }


@pytest.fixture
def chain(_session_chain: Chain, _deployed: dict[str, Contract]) -> Iterator[Chain]:
    """The chain, reverted to its post-deployment state after the test."""
    snapshot = _session_chain.tester.take_snapshot()
    try:
        yield _session_chain
    finally:
        _session_chain.tester.revert_to_snapshot(snapshot)


@pytest.fixture
def ledger_anchor(chain: Chain, _deployed: dict[str, Contract]) -> Contract:
    return _deployed["LedgerAnchor"]


@pytest.fixture
def authority(chain: Chain, _deployed: dict[str, Contract]) -> Contract:
    return _deployed["Authority"]


@pytest.fixture
def get_events() -> Callable[[Contract, str, Any], list[dict[str, Any]]]:
    return events
