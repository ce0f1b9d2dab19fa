"""Chain clients: one interface (:class:`ChainClient`), three backends, one implementation.

:class:`Web3Chain` talks to any EVM through web3.py and signs transactions locally with an
``eth_account`` key; the backends differ only in the provider and where the addresses come from:

* ``memory`` — :func:`memory_chain`: an in-process py-evm (``EthereumTesterProvider``) on which the
  contracts are deployed afresh. Unit tests only; nothing persists.
* ``anvil`` / ``rpc`` — :func:`connect`: any JSON-RPC (HTTP) endpoint, the contract addresses from a
  :class:`~evidence_ledger.ledger.deployments.Deployments` file, the key from an argument (or from a
  keystore via :func:`load_keystore`). Without a key the client is read-only.
* a verifier with nothing but an RPC URL uses :func:`read_only` and
  ``fetch_anchor(tx_hash, contract_address=...)`` with the address taken from the proof bundle.

Every foreign exception is translated into :class:`~evidence_ledger.ledger.errors.ChainError`
subclasses: an endpoint that does not answer -> ``ChainUnavailableError``; a contract revert ->
``ContractRevertError(error_name, args)`` decoded against the ABI's custom errors.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import eth_abi
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import (
    BadFunctionCallOutput,
    BlockNotFound,
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)
from web3.logs import DISCARD

from .errors import ChainError, ChainUnavailableError, ContractRevertError, DeploymentError

if TYPE_CHECKING:
    from .deployments import Deployments

__all__ = [
    "ANCHOR_CONTRACT",
    "AUTHORITY_CONTRACT",
    "AnchorReceipt",
    "AuthorityAgency",
    "AuthorityKey",
    "ChainClient",
    "LOT_STATUS_CONTRACT",
    "LOT_STATUS_NAMES",
    "LotOnChainStatus",
    "address_of_account",
    "DeployedContract",
    "OnChainCheckpoint",
    "Web3Chain",
    "connect",
    "load_keystore",
    "log_id_for",
    "lot_digital_link_path",
    "lot_key",
    "memory_chain",
    "read_only",
]

ANCHOR_CONTRACT = "LedgerAnchor"
AUTHORITY_CONTRACT = "Authority"
LOT_STATUS_CONTRACT = "LotStatus"

_UINT64_MAX = 2**64 - 1
#: Gas estimate margin: estimate * 1.25 + 10k (storage costs can differ slightly between the
#: estimate and inclusion when another anchor lands first).
_GAS_MARGIN_NUM, _GAS_MARGIN_DEN, _GAS_MARGIN_ADD = 5, 4, 10_000


def log_id_for(origin: str) -> bytes:
    """The on-chain log id of a log: keccak256 of its origin line (UTF-8)."""
    return keccak(origin.encode("utf-8"))


#: Prefix of the preimage of a lot key (domain separation from every other keccak256 use).
LOT_KEY_PREFIX = "evidence-ledger/lot/"
#: GS1 AI (10) batch/lot: 1 to 20 characters of the GS1 AI encodable character set 82.
_GS1_CSET82 = frozenset("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")


def lot_digital_link_path(gtin: str, lot: str) -> str:
    """The GS1 Digital Link path of a lot, ``/01/<GTIN-14>/10/<lot>``, in the canonical form that
    :func:`lot_key` hashes: the GTIN (8, 12, 13 or 14 digits, check digit verified) left-padded
    with zeros to 14 digits; the lot number (GS1 AI 10: 1 to 20 characters of GS1 character set
    82) percent-encoded as in a URI path segment (every character but ``A-Z a-z 0-9 - . _``
    becomes ``%XX``, upper-case hex). ``ValueError`` on an invalid GTIN or lot number."""
    if not isinstance(gtin, str) or not gtin.isascii() or not gtin.isdigit() or len(gtin) not in (8, 12, 13, 14):
        raise ValueError(f"GTIN must be 8, 12, 13 or 14 digits, got {gtin!r}")
    gtin14 = gtin.rjust(14, "0")
    body, check = gtin14[:-1], int(gtin14[-1])
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(body)))
    if (10 - total % 10) % 10 != check:
        raise ValueError(f"GTIN {gtin!r} has a wrong check digit")
    if not isinstance(lot, str) or not 1 <= len(lot) <= 20 or not set(lot) <= _GS1_CSET82:
        raise ValueError(f"lot number must be 1 to 20 characters of GS1 character set 82, got {lot!r}")
    from urllib.parse import quote

    return f"/01/{gtin14}/10/{quote(lot, safe='')}"


def lot_key(gtin: str, lot: str) -> bytes:
    """The on-chain key of a food lot in ``LotStatus``:
    ``keccak256("evidence-ledger/lot/" + "/01/<GTIN-14>/10/<lot>")`` (UTF-8), the path as given by
    :func:`lot_digital_link_path`; e.g. ``lot_key("09506000134352", "LOT42")`` hashes
    ``evidence-ledger/lot//01/09506000134352/10/LOT42``. Only the hash goes on chain."""
    return keccak((LOT_KEY_PREFIX + lot_digital_link_path(gtin, lot)).encode("utf-8"))


@dataclass(frozen=True)
class AnchorReceipt:
    """Where and when a checkpoint was anchored (the ``anchor`` part of a proof bundle)."""

    chain_id: int
    contract_address: str
    tx_hash_hex: str
    block_number: int
    block_hash_hex: str
    anchored_at: datetime  # aware, UTC, from the block's timestamp
    log_id: bytes
    checkpoint_index: int
    tree_size: int
    root_hash: bytes
    gas_used: int


@dataclass(frozen=True)
class OnChainCheckpoint:
    """A checkpoint as stored by ``LedgerAnchor``."""

    index: int
    tree_size: int
    root_hash: bytes
    anchored_at: datetime
    block_number: int


@dataclass(frozen=True)
class DeployedContract:
    """The result of :meth:`Web3Chain.deploy`."""

    name: str
    address: str
    tx_hash_hex: str
    block_number: int
    deployed_at: datetime
    runtime_code: bytes


@runtime_checkable
class ChainClient(Protocol):
    chain_id: int
    anchor_address: str

    def anchor(self, log_id: bytes, tree_size: int, root_hash: bytes) -> AnchorReceipt: ...
    def checkpoint_count(self, log_id: bytes) -> int: ...
    def latest_checkpoint(self, log_id: bytes) -> OnChainCheckpoint | None: ...
    def find_checkpoint(self, log_id: bytes, tree_size: int) -> OnChainCheckpoint | None: ...
    def fetch_anchor(self, tx_hash_hex: str, contract_address: str | None = None) -> AnchorReceipt: ...
    def find_anchor(self, log_id: bytes, index: int) -> AnchorReceipt: ...
    def is_available(self) -> bool: ...
    def close(self) -> None: ...


# -- artifacts ------------------------------------------------------------------------------------


def _load_artifact(name: str) -> Any:
    """``contracts.load_artifact`` (imported late: it reads committed JSON files)."""
    from .contracts import load_artifact

    return load_artifact(name)


def _hex(data: bytes | str) -> str:
    if isinstance(data, str):
        return data if data.startswith("0x") else "0x" + data
    return "0x" + bytes(data).hex()


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(int(timestamp), tz=UTC)


# -- error translation ----------------------------------------------------------------------------


def _error_table(abi: list[dict]) -> dict[bytes, tuple[str, list[str]]]:
    table: dict[bytes, tuple[str, list[str]]] = {}
    for entry in abi:
        if entry.get("type") != "error":
            continue
        types = [_abi_type(i) for i in entry.get("inputs", [])]
        selector = keccak(f"{entry['name']}({','.join(types)})".encode())[:4]
        table[selector] = (entry["name"], types)
    return table


def _abi_type(param: dict) -> str:
    t = param["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param.get("components", [])) + ")" + t[5:]
    return t


def _revert_data(exc: BaseException) -> bytes | None:
    data = getattr(exc, "data", None)
    if isinstance(data, dict):  # some nodes nest it: {"data": "0x..."}
        data = data.get("data")
    if isinstance(data, str):
        if data.startswith("Reverted "):
            data = data[len("Reverted ") :]
        try:
            return bytes.fromhex(data.removeprefix("0x"))
        except ValueError:
            return None
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    return None


_PANIC_SELECTOR = keccak(b"Panic(uint256)")[:4]
_ERROR_SELECTOR = keccak(b"Error(string)")[:4]


def _decode_revert(exc: BaseException, errors: Mapping[bytes, tuple[str, list[str]]]) -> ContractRevertError:
    data = _revert_data(exc)
    if data and len(data) >= 4:
        selector, payload = data[:4], data[4:]
        try:
            if selector in errors:
                name, types = errors[selector]
                args = tuple(_plain(a) for a in eth_abi.decode(types, payload))
                shown = ", ".join("0x" + a.hex() if isinstance(a, bytes) else repr(a) for a in args)
                return ContractRevertError(name, args, f"contract reverted with {name}({shown})")
            if selector == _PANIC_SELECTOR:
                (code,) = eth_abi.decode(["uint256"], payload)
                return ContractRevertError("Panic", (code,), f"contract panicked with code {code:#x}")
            if selector == _ERROR_SELECTOR:
                (reason,) = eth_abi.decode(["string"], payload)
                return ContractRevertError("Error", (reason,), f"contract reverted: {reason}")
        except Exception:  # noqa: BLE001 - undecodable payload: fall through to the generic form
            pass
        return ContractRevertError("UnknownError", (data.hex(),), f"contract reverted with unknown error 0x{data.hex()}")
    message = getattr(exc, "message", None) or str(exc)
    return ContractRevertError("Revert", (message,), f"contract reverted: {message}")


def _plain(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return to_checksum_address(value)
    return value


_UNAVAILABLE = (
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
    ProviderConnectionError,
    RequestTimedOut,
)


@contextlib.contextmanager
def _translate(what: str, errors: Mapping[bytes, tuple[str, list[str]]] | None = None) -> Iterator[None]:
    """Turn every foreign exception raised while doing ``what`` into a ``ChainError``."""
    try:
        yield
    except ChainError:
        raise
    except (ContractCustomError, ContractPanicError, ContractLogicError) as e:
        raise _decode_revert(e, errors or {}) from e
    except _UNAVAILABLE as e:
        raise ChainUnavailableError(f"{what}: chain endpoint unavailable ({type(e).__name__}: {e})") from e
    except requests.RequestException as e:  # HTTP 5xx etc.
        raise ChainUnavailableError(f"{what}: chain endpoint failed ({type(e).__name__}: {e})") from e
    except Exception as e:
        if type(e).__name__ == "TransactionFailed" and type(e).__module__.startswith("eth_tester"):
            raise _decode_revert(_TesterRevert(_tester_revert_data(e)), errors or {}) from e  # memory backend
        raise _translate_other(what, e) from e


def _translate_other(what: str, e: Exception) -> ChainError:
    if isinstance(e, TransactionNotFound | BlockNotFound):
        return ChainError(f"{what}: {e}")
    if isinstance(e, TimeExhausted):
        return ChainError(f"{what}: transaction not mined in time ({e})")
    if isinstance(e, BadFunctionCallOutput):
        return DeploymentError(f"{what}: no contract answered ({e})")
    if isinstance(e, Web3RPCError):
        return ChainError(f"{what}: node error: {e.message}")
    return ChainError(f"{what}: {type(e).__name__}: {e}")


class _TesterRevert(Exception):
    def __init__(self, data: bytes | None) -> None:
        super().__init__("execution reverted")
        self.data = data


def _tester_revert_data(exc: BaseException) -> bytes | None:
    """eth-tester (memory backend) reverts: web3 re-raises them as
    ``TransactionFailed("execution reverted: b'...'")`` while handling the original one, whose
    first argument holds the raw revert bytes."""
    seen: BaseException | None = exc
    while seen is not None:
        arg = seen.args[0] if seen.args else None
        if isinstance(arg, BaseException) and arg.args:
            arg = arg.args[0]
        if isinstance(arg, bytes):
            return arg
        seen = seen.__context__ or seen.__cause__
    text = str(exc.args[0]) if exc.args else ""
    prefix = "execution reverted: "
    if text.startswith(prefix + "b'") or text.startswith(prefix + 'b"'):
        with contextlib.suppress(ValueError, SyntaxError):
            value = ast.literal_eval(text[len(prefix) :])
            if isinstance(value, bytes):
                return value
    return None


# -- the client -----------------------------------------------------------------------------------


class Web3Chain:
    """A :class:`ChainClient` over a web3 provider, signing locally with ``account`` (if any).

    ``anchor_address`` may be ``None`` only for deployment work and for read-only verifiers that
    pass the contract address to :meth:`fetch_anchor`.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        anchor_address: str | None = None,
        authority_address: str | None = None,
        account: LocalAccount | None = None,
        rpc_url: str | None = None,
        receipt_timeout_s: float = 120.0,
        poll_interval_s: float = 0.1,
        session: requests.Session | None = None,
        backend: str = "rpc",
    ) -> None:
        self.w3 = w3
        self.account = account
        self.rpc_url = rpc_url
        self.backend = backend
        self.receipt_timeout_s = receipt_timeout_s
        self.poll_interval_s = poll_interval_s
        self._session = session
        self._lock = threading.RLock()
        self._anchor_abi = _load_artifact(ANCHOR_CONTRACT).abi
        self._errors = _error_table(self._anchor_abi)
        with _translate("reading the chain id"):
            self.chain_id: int = int(w3.eth.chain_id)
        self.anchor_address: str | None = to_checksum_address(anchor_address) if anchor_address else None
        self.authority_address: str | None = to_checksum_address(authority_address) if authority_address else None

    def __repr__(self) -> str:
        return (
            f"Web3Chain(backend={self.backend!r}, chain_id={self.chain_id}, anchor={self.anchor_address}, "
            f"signer={self.address})"
        )

    @property
    def address(self) -> str | None:
        """The signing account's address, or ``None`` when read-only."""
        return self.account.address if self.account is not None else None

    @property
    def read_only(self) -> bool:
        return self.account is None

    def _contract(self, address: str | None = None) -> Any:
        address = address or self.anchor_address
        if address is None:
            raise DeploymentError(
                f"no {ANCHOR_CONTRACT} deployment recorded for chain id {self.chain_id} (deploy the contracts first)"
            )
        return self.w3.eth.contract(address=to_checksum_address(address), abi=self._anchor_abi)

    # -- transactions --------------------------------------------------------------------------

    def _fee_fields(self, block: Mapping[str, Any]) -> dict[str, int]:
        """EIP-1559 fees (2 x base fee + tip) if the node has a base fee, else a legacy gas price."""
        base_fee = block.get("baseFeePerGas")
        if base_fee is None:  # legacy-only node (e.g. FISCO BCOS, old Besu free-gas networks)
            return {"gasPrice": int(self.w3.eth.gas_price)}
        try:
            priority = int(self.w3.eth.max_priority_fee)
        except (Web3RPCError, ValueError):
            priority = 1_000_000_000 if base_fee else 0
        return {"maxFeePerGas": 2 * int(base_fee) + priority, "maxPriorityFeePerGas": priority}

    def _transact(
        self,
        tx: dict[str, Any],
        what: str,
        *,
        account: LocalAccount | None = None,
        errors: Mapping[bytes, tuple[str, list[str]]] | None = None,
    ) -> Any:
        """Fill in nonce, gas and fees, sign, send and wait for the receipt; raise on revert.

        ``account`` signs instead of this client's account (e.g. an agency admin's key);
        ``errors`` decodes reverts of another contract (default: ``LedgerAnchor``'s)."""
        account = account or self.account
        errors = self._errors if errors is None else errors
        if account is None:
            raise ChainError(f"{what}: this chain client is read-only (no private key)")
        with self._lock, _translate(what, errors):
            tx = dict(tx)
            tx["from"] = account.address
            tx["chainId"] = self.chain_id
            tx["nonce"] = self.w3.eth.get_transaction_count(account.address, "pending")
            tx.pop("gas", None)
            tx.pop("gasPrice", None)
            tx.pop("maxFeePerGas", None)
            tx.pop("maxPriorityFeePerGas", None)
            latest = self.w3.eth.get_block("latest")
            tx.update(self._fee_fields(latest))
            estimate = self.w3.eth.estimate_gas({k: v for k, v in tx.items() if k != "nonce"})
            block_gas_limit = int(latest["gasLimit"])
            tx["gas"] = min(estimate * _GAS_MARGIN_NUM // _GAS_MARGIN_DEN + _GAS_MARGIN_ADD, block_gas_limit)
            signed = account.sign_transaction(tx)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.receipt_timeout_s, poll_latency=self.poll_interval_s
            )
        if receipt["status"] != 1:
            failed = ChainError(f"{what}: transaction {_hex(tx_hash)} reverted in block {receipt['blockNumber']}")
            # Replay it (on the current state) to recover the revert reason, if it still reverts.
            replay = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
            try:
                with _translate(what, errors):
                    self.w3.eth.call(replay)
            except ContractRevertError as e:
                raise e from failed
            except ChainError:
                pass
            raise failed
        return receipt

    def deploy(self, name: str, *constructor_args: Any, artifact: Any = None) -> DeployedContract:
        """Deploy a contract from its artifact; default constructor argument: the signer (owner)."""
        if self.account is None:
            raise ChainError(f"deploying {name}: this chain client is read-only (no private key)")
        artifact = artifact or _load_artifact(name)
        ctor = next((e for e in artifact.abi if e.get("type") == "constructor"), None)
        inputs = ctor.get("inputs", []) if ctor else []
        if not constructor_args and len(inputs) == 1 and inputs[0]["type"] == "address":
            constructor_args = (self.account.address,)
        with _translate(f"deploying {name}"):
            factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
            data = factory.constructor(*constructor_args).data_in_transaction
        receipt = self._transact({"data": data, "value": 0}, f"deploying {name}")
        with _translate(f"deploying {name}"):
            address = to_checksum_address(receipt["contractAddress"])
            block = self.w3.eth.get_block(receipt["blockNumber"])
            code = bytes(self.w3.eth.get_code(address))
        return DeployedContract(
            name=name,
            address=address,
            tx_hash_hex=_hex(receipt["transactionHash"]),
            block_number=int(receipt["blockNumber"]),
            deployed_at=_utc(block["timestamp"]),
            runtime_code=code,
        )

    # -- the ChainClient interface ------------------------------------------------------------

    def anchor(self, log_id: bytes, tree_size: int, root_hash: bytes) -> AnchorReceipt:
        """Anchor a checkpoint; wait for the receipt and decode ``CheckpointAnchored``."""
        _check_bytes32("log_id", log_id)
        _check_bytes32("root_hash", root_hash)
        if not 0 < tree_size <= _UINT64_MAX:
            raise ValueError(f"tree_size must be in 1..2**64-1, got {tree_size}")
        contract = self._contract()
        with _translate("anchoring", self._errors):
            data = contract.encode_abi("anchor", args=[bytes(log_id), int(tree_size), bytes(root_hash)])
        receipt = self._transact({"to": contract.address, "data": data, "value": 0}, "anchoring")
        return self._anchor_receipt(receipt, contract, expected_log_id=bytes(log_id))

    def _anchor_receipt(
        self, receipt: Any, contract: Any, expected_log_id: bytes | None = None, expected_index: int | None = None
    ) -> AnchorReceipt:
        tx_hash = _hex(receipt["transactionHash"])
        with _translate(f"decoding anchor transaction {tx_hash}", self._errors):
            events = [
                ev
                for ev in contract.events.CheckpointAnchored().process_receipt(receipt, errors=DISCARD)
                if to_checksum_address(ev["address"]) == contract.address
                and (expected_log_id is None or bytes(ev["args"]["logId"]) == expected_log_id)
                and (expected_index is None or int(ev["args"]["index"]) == expected_index)
            ]
            if not events:
                raise ChainError(
                    f"transaction {tx_hash} is not an anchor transaction of contract {contract.address} "
                    "(no CheckpointAnchored event from it)"
                )
            if len(events) > 1:
                raise ChainError(f"transaction {tx_hash} holds {len(events)} CheckpointAnchored events; expected one")
            args = events[0]["args"]
            block = self.w3.eth.get_block(receipt["blockHash"])
        return AnchorReceipt(
            chain_id=self.chain_id,
            contract_address=contract.address,
            tx_hash_hex=tx_hash,
            block_number=int(receipt["blockNumber"]),
            block_hash_hex=_hex(receipt["blockHash"]),
            anchored_at=_utc(block["timestamp"]),
            log_id=bytes(args["logId"]),
            checkpoint_index=int(args["index"]),
            tree_size=int(args["treeSize"]),
            root_hash=bytes(args["rootHash"]),
            gas_used=int(receipt["gasUsed"]),
        )

    def fetch_anchor(self, tx_hash_hex: str, contract_address: str | None = None) -> AnchorReceipt:
        """Read a past anchor from its receipt and block (for verification).

        ``ChainError`` if the transaction is unknown, not mined, failed, or not an anchor
        transaction of the contract (``contract_address``, default this client's).
        """
        contract = self._contract(contract_address)
        with _translate(f"fetching anchor transaction {tx_hash_hex}", self._errors):
            try:
                receipt = self.w3.eth.get_transaction_receipt(_hex(tx_hash_hex))
            except TransactionNotFound as e:
                raise ChainError(f"transaction {tx_hash_hex} not found on chain {self.chain_id}") from e
        if receipt is None:
            raise ChainError(f"transaction {tx_hash_hex} not found on chain {self.chain_id}")
        if receipt["status"] != 1:
            raise ChainError(f"transaction {tx_hash_hex} failed (status 0); it anchored nothing")
        return self._anchor_receipt(receipt, contract)

    def find_anchor(self, log_id: bytes, index: int) -> AnchorReceipt:
        """The anchor of checkpoint ``index`` of a log, recovered from the chain (its
        ``CheckpointAnchored`` event in the block the contract recorded): e.g. for a checkpoint
        that was sent before a crash but whose receipt was never stored.
        ``ContractRevertError('IndexOutOfRange', ...)`` if there is no such checkpoint."""
        _check_bytes32("log_id", log_id)
        checkpoint = self.checkpoint_at(log_id, index)
        contract = self._contract()
        with _translate(f"finding the anchor of checkpoint {index}", self._errors):
            events = contract.events.CheckpointAnchored().get_logs(
                argument_filters={"logId": bytes(log_id), "index": int(index)},
                from_block=checkpoint.block_number,
                to_block=checkpoint.block_number,
            )
            if not events:
                raise ChainError(
                    f"no CheckpointAnchored event for checkpoint {index} in block {checkpoint.block_number}"
                )
            receipt = self.w3.eth.get_transaction_receipt(events[0]["transactionHash"])
        return self._anchor_receipt(receipt, contract, expected_log_id=bytes(log_id), expected_index=int(index))

    def checkpoint_count(self, log_id: bytes) -> int:
        _check_bytes32("log_id", log_id)
        with _translate("reading checkpointCount", self._errors):
            return int(self._contract().functions.checkpointCount(bytes(log_id)).call())

    def checkpoint_at(self, log_id: bytes, index: int) -> OnChainCheckpoint:
        _check_bytes32("log_id", log_id)
        with _translate("reading checkpointAt", self._errors):
            raw = self._contract().functions.checkpointAt(bytes(log_id), int(index)).call()
        return _checkpoint(index, raw)

    def latest_checkpoint(self, log_id: bytes) -> OnChainCheckpoint | None:
        _check_bytes32("log_id", log_id)
        contract = self._contract()
        with _translate("reading latestCheckpoint", self._errors):
            # Two reads pinned to one block so the index and the checkpoint agree.
            block_number = self.w3.eth.block_number
            count = int(contract.functions.checkpointCount(bytes(log_id)).call(block_identifier=block_number))
            if count == 0:
                return None
            raw = contract.functions.checkpointAt(bytes(log_id), count - 1).call(block_identifier=block_number)
        return _checkpoint(count - 1, raw)

    def find_checkpoint(self, log_id: bytes, tree_size: int) -> OnChainCheckpoint | None:
        _check_bytes32("log_id", log_id)
        if not 0 <= tree_size <= _UINT64_MAX:
            return None
        try:
            with _translate("reading findCheckpoint", self._errors):
                index, raw = self._contract().functions.findCheckpoint(bytes(log_id), int(tree_size)).call()
        except ContractRevertError as e:
            if e.error_name == "CheckpointNotFound":
                return None
            raise
        return _checkpoint(int(index), raw)

    def code_at(self, address: str) -> bytes:
        with _translate(f"reading the code at {address}"):
            return bytes(self.w3.eth.get_code(to_checksum_address(address)))

    def block_number(self) -> int:
        with _translate("reading the block number"):
            return int(self.w3.eth.block_number)

    def is_available(self) -> bool:
        try:
            with _translate("probing the chain"):
                return int(self.w3.eth.chain_id) == self.chain_id
        except ChainError:
            return False

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        provider = self.w3.provider
        manager = getattr(provider, "_request_session_manager", None)
        pool = getattr(manager, "session_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)

    def __enter__(self) -> Web3Chain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the Authority contract ----------------------------------------------------------------
    #
    # Accounts: the ``Authority`` owner registers agencies; each agency's admin registers and
    # revokes its keys. The simplest deployment (what the service does) uses the service's own
    # anchoring account for both: it deploys Authority (so it is the owner) and names itself the
    # admin of every agency it registers. An agency that manages its keys itself gets its own
    # admin address; the key-management calls then take that admin's ``private_key`` (the
    # transaction is signed with it, the client's own account is untouched).

    def _authority_parts(self) -> tuple[list[dict[str, Any]], dict[bytes, tuple[str, list[str]]]]:
        parts = getattr(self, "_authority_cache", None)
        if parts is None:
            abi = _load_artifact(AUTHORITY_CONTRACT).abi
            parts = (abi, _error_table(abi))
            self._authority_cache = parts
        return parts

    def _authority(self) -> Any:
        if self.authority_address is None:
            raise DeploymentError(
                f"no {AUTHORITY_CONTRACT} deployment recorded for chain id {self.chain_id} (deploy the contracts first)"
            )
        abi, _ = self._authority_parts()
        return self.w3.eth.contract(address=to_checksum_address(self.authority_address), abi=abi)

    def _authority_transact(self, function: str, args: list[Any], what: str,
                            private_key: str | bytes | None) -> Any:
        contract = self._authority()
        _, errors = self._authority_parts()
        account = _account(private_key) if private_key is not None else None
        with _translate(what, errors):
            data = contract.encode_abi(function, args=args)
        return self._transact({"to": contract.address, "data": data, "value": 0}, what,
                              account=account, errors=errors)

    def _authority_call(self, function: str, args: list[Any], what: str) -> Any:
        contract = self._authority()
        _, errors = self._authority_parts()
        with _translate(what, errors):
            return getattr(contract.functions, function)(*args).call()

    def register_agency(self, agency_id: bytes, kind: int, name: str, admin: str | None = None, *,
                        private_key: str | bytes | None = None) -> str:
        """Register an agency (owner only); ``admin`` defaults to this client's account.
        Returns the transaction hash."""
        _check_bytes32("agency_id", agency_id)
        admin = admin or self.address
        if admin is None:
            raise ChainError("registering an agency: no admin given and this client is read-only")
        receipt = self._authority_transact(
            "registerAgency", [bytes(agency_id), int(kind), name, to_checksum_address(admin)],
            "registering an agency", private_key)
        return _hex(receipt["transactionHash"])

    def set_agency_status(self, agency_id: bytes, active: bool, *,
                          private_key: str | bytes | None = None) -> str:
        """(De)activate an agency from now on (owner only). Returns the transaction hash."""
        _check_bytes32("agency_id", agency_id)
        receipt = self._authority_transact("setAgencyStatus", [bytes(agency_id), bool(active)],
                                           "setting an agency's status", private_key)
        return _hex(receipt["transactionHash"])

    def set_agency_admin(self, agency_id: bytes, admin: str, *,
                         private_key: str | bytes | None = None) -> str:
        """Appoint an agency's admin (owner only). Returns the transaction hash."""
        _check_bytes32("agency_id", agency_id)
        receipt = self._authority_transact("setAgencyAdmin", [bytes(agency_id), to_checksum_address(admin)],
                                           "setting an agency's admin", private_key)
        return _hex(receipt["transactionHash"])

    def register_key(self, agency_id: bytes, public_key: bytes, member_id: bytes, role: int,
                     valid_from: int = 0, valid_until: int = _UINT64_MAX, *,
                     private_key: str | bytes | None = None) -> bytes:
        """Register a member's Ed25519 key (agency admin only: this client's account, or the
        account of ``private_key``). Returns the key id, sha256(public_key), as computed on chain."""
        _check_bytes32("agency_id", agency_id)
        _check_bytes32("public_key", public_key)
        _check_bytes32("member_id", member_id)
        receipt = self._authority_transact(
            "registerKey",
            [bytes(agency_id), bytes(public_key), bytes(member_id), int(role), int(valid_from), int(valid_until)],
            "registering a key", private_key)
        contract = self._authority()
        with _translate("decoding KeyRegistered"):
            events = contract.events.KeyRegistered().process_receipt(receipt, errors=DISCARD)
        if len(events) != 1:
            raise ChainError(f"transaction {_hex(receipt['transactionHash'])} holds {len(events)} "
                             "KeyRegistered events; expected one")
        return bytes(events[0]["args"]["keyId"])

    def revoke_key(self, key_id: bytes, reason: int = 0, *, private_key: str | bytes | None = None) -> str:
        """Revoke a key from now on (its agency's admin or the owner). Returns the transaction hash."""
        _check_bytes32("key_id", key_id)
        receipt = self._authority_transact("revokeKey", [bytes(key_id), int(reason)], "revoking a key",
                                           private_key)
        return _hex(receipt["transactionHash"])

    def was_authorized(self, key_id: bytes, role: int, at_time: int) -> bool:
        """Whether the key held ``role`` at unix time ``at_time`` (never reverts)."""
        _check_bytes32("key_id", key_id)
        if not 0 <= int(at_time) <= _UINT64_MAX:
            return False
        return bool(self._authority_call("wasAuthorized", [bytes(key_id), int(role), int(at_time)],
                                         "reading wasAuthorized"))

    def get_key(self, key_id: bytes) -> AuthorityKey:
        """The registered key; ``ContractRevertError('KeyNotFound', ...)`` if unknown."""
        _check_bytes32("key_id", key_id)
        raw = self._authority_call("getKey", [bytes(key_id)], "reading getKey")
        public_key, agency_id, member_id, role, valid_from, valid_until, revoked_at, reason = raw
        return AuthorityKey(
            key_id=bytes(key_id), public_key=bytes(public_key), agency_id=bytes(agency_id),
            member_id=bytes(member_id), role=int(role), valid_from=int(valid_from),
            valid_until=int(valid_until), revoked_at=int(revoked_at), revocation_reason=int(reason))

    def get_agency(self, agency_id: bytes) -> AuthorityAgency:
        """The registered agency; ``ContractRevertError('AgencyNotFound', ...)`` if unknown."""
        _check_bytes32("agency_id", agency_id)
        kind, active, admin, registered_at, name = self._authority_call(
            "getAgency", [bytes(agency_id)], "reading getAgency")
        return AuthorityAgency(agency_id=bytes(agency_id), kind=int(kind), active=bool(active),
                               admin=to_checksum_address(admin), registered_at=int(registered_at), name=name)

    def authority_owner(self) -> str:
        return to_checksum_address(self._authority_call("owner", [], "reading the Authority owner"))

    # -- the LotStatus contract ----------------------------------------------------------------
    #
    # Accounts: the ``LotStatus`` owner (the deploying service account) is a regulator from the
    # start and grants the role to other regulators' addresses; their calls take their
    # ``private_key`` (the transaction is signed with it, the client's own account is untouched).
    # Reads need no key: a till or a phone uses a read-only client.

    #: ``LotStatus`` address (class default; set per client by ``connect``/``memory_chain``/deploy).
    _lot_status_address: str | None = None

    @property
    def lot_status_address(self) -> str | None:
        return self._lot_status_address

    @lot_status_address.setter
    def lot_status_address(self, address: str | None) -> None:
        self._lot_status_address = to_checksum_address(address) if address else None

    def _lot_status_parts(self) -> tuple[list[dict[str, Any]], dict[bytes, tuple[str, list[str]]]]:
        parts = getattr(self, "_lot_status_cache", None)
        if parts is None:
            abi = _load_artifact(LOT_STATUS_CONTRACT).abi
            parts = (abi, _error_table(abi))
            self._lot_status_cache = parts
        return parts

    def _lot_status(self) -> Any:
        if self.lot_status_address is None:
            raise DeploymentError(
                f"no {LOT_STATUS_CONTRACT} deployment recorded for chain id {self.chain_id} (deploy the contracts first)"
            )
        abi, _ = self._lot_status_parts()
        return self.w3.eth.contract(address=self.lot_status_address, abi=abi)

    def _lot_status_transact(self, function: str, args: list[Any], what: str,
                             private_key: str | bytes | None) -> Any:
        contract = self._lot_status()
        _, errors = self._lot_status_parts()
        account = _account(private_key) if private_key is not None else None
        with _translate(what, errors):
            data = contract.encode_abi(function, args=args)
        return self._transact({"to": contract.address, "data": data, "value": 0}, what,
                              account=account, errors=errors)

    def _lot_status_call(self, function: str, args: list[Any], what: str) -> Any:
        contract = self._lot_status()
        _, errors = self._lot_status_parts()
        with _translate(what, errors):
            return getattr(contract.functions, function)(*args).call()

    def set_lot_status(self, lot_key: bytes, status: int | str, reason_hash: bytes = b"\0" * 32,
                       parent: bytes = b"\0" * 32, *, private_key: str | bytes | None = None) -> str:
        """Set a lot's status (regulators only). ``status`` is a ``LotStatus.Status`` value or
        name (:data:`LOT_STATUS_NAMES`); ``parent`` the ancestor lot that caused it, or zero.
        Returns the transaction hash; a refused change raises ``ContractRevertError`` named after
        the contract's error (``InvalidTransition``, ``NotRegulator``, ...)."""
        _check_bytes32("lot_key", lot_key)
        _check_bytes32("reason_hash", reason_hash)
        _check_bytes32("parent", parent)
        receipt = self._lot_status_transact(
            "setStatus", [bytes(lot_key), _lot_status_value(status), bytes(reason_hash), bytes(parent)],
            "setting a lot status", private_key)
        return _hex(receipt["transactionHash"])

    def set_lot_status_batch(self, keys: list[bytes] | tuple[bytes, ...], status: int | str,
                             reason_hash: bytes = b"\0" * 32, root: bytes = b"\0" * 32, *,
                             private_key: str | bytes | None = None) -> str:
        """Set the status of up to ``LotStatus.MAX_BATCH`` (500) lots in one transaction, all or
        nothing, e.g. recall every descendant of ``root`` (each gets ``root`` as its parent; the
        root itself, if listed, gets none). Returns the transaction hash."""
        keys = list(keys)
        for key in keys:
            _check_bytes32("lot key", key)
        _check_bytes32("reason_hash", reason_hash)
        _check_bytes32("root", root)
        receipt = self._lot_status_transact(
            "setStatusBatch", [[bytes(k) for k in keys], _lot_status_value(status), bytes(reason_hash), bytes(root)],
            f"setting the status of {len(keys)} lots", private_key)
        return _hex(receipt["transactionHash"])

    def lot_status(self, lot_key: bytes) -> LotOnChainStatus:
        """The lot's current status (``Unknown``, all zero, for a lot never set)."""
        _check_bytes32("lot_key", lot_key)
        status, updated_at, reason_hash, parent = self._lot_status_call(
            "statusOf", [bytes(lot_key)], "reading a lot status")
        return LotOnChainStatus(
            status=_lot_status_name(int(status)),
            updated_at=_utc(updated_at) if int(updated_at) else None,
            reason_hash=bytes(reason_hash),
            parent=bytes(parent),
        )

    def is_recalled(self, lot_key: bytes) -> bool:
        """Whether the lot is under recall now (status ``Recalled``)."""
        _check_bytes32("lot_key", lot_key)
        return bool(self._lot_status_call("isRecalled", [bytes(lot_key)], "reading isRecalled"))

    def grant_regulator(self, account: str, *, private_key: str | bytes | None = None) -> str:
        """Let ``account`` set lot statuses (``LotStatus`` owner only). Returns the transaction hash."""
        receipt = self._lot_status_transact("grantRegulator", [to_checksum_address(account)],
                                            "granting the regulator role", private_key)
        return _hex(receipt["transactionHash"])

    def revoke_regulator(self, account: str, *, private_key: str | bytes | None = None) -> str:
        """Withdraw ``account``'s regulator role (``LotStatus`` owner only). Returns the transaction hash."""
        receipt = self._lot_status_transact("revokeRegulator", [to_checksum_address(account)],
                                            "revoking the regulator role", private_key)
        return _hex(receipt["transactionHash"])

    def is_regulator(self, account: str) -> bool:
        return bool(self._lot_status_call("isRegulator", [to_checksum_address(account)], "reading isRegulator"))


#: ``LotStatus.Status`` names by value.
LOT_STATUS_NAMES: tuple[str, ...] = ("Unknown", "Active", "Recalled", "Disposed", "Released")


@dataclass(frozen=True)
class LotOnChainStatus:
    """A lot's current status as stored by ``LotStatus`` (``status`` one of
    :data:`LOT_STATUS_NAMES`; ``updated_at`` ``None`` for a lot never set; ``reason_hash`` and
    ``parent`` 32 bytes, zero when not given)."""

    status: str
    updated_at: datetime | None
    reason_hash: bytes
    parent: bytes

    @property
    def recalled(self) -> bool:
        return self.status == "Recalled"


def _lot_status_value(status: int | str) -> int:
    """A status name or value -> its value; out-of-range ints go to the contract (``InvalidStatus``)."""
    if isinstance(status, str):
        try:
            return LOT_STATUS_NAMES.index(status)
        except ValueError:
            raise ValueError(f"unknown lot status {status!r} (one of {', '.join(LOT_STATUS_NAMES)})") from None
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 255:
        raise ValueError(f"lot status must be a name or an int in 0..255, got {status!r}")
    return status


def _lot_status_name(value: int) -> str:
    return LOT_STATUS_NAMES[value] if 0 <= value < len(LOT_STATUS_NAMES) else f"Status({value})"


@dataclass(frozen=True)
class AuthorityKey:
    """A signing key as registered in ``Authority`` (times in unix seconds; ``revoked_at`` 0 =
    not revoked; ``valid_until`` 2**64-1 = no expiry)."""

    key_id: bytes
    public_key: bytes
    agency_id: bytes
    member_id: bytes
    role: int
    valid_from: int
    valid_until: int
    revoked_at: int
    revocation_reason: int


@dataclass(frozen=True)
class AuthorityAgency:
    """An agency as registered in ``Authority``."""

    agency_id: bytes
    kind: int
    active: bool
    admin: str
    registered_at: int
    name: str


def address_of_account(private_key: str | bytes) -> str:
    """The checksummed address of an Ethereum private key (never echoes the key)."""
    return _account(private_key).address


def _check_bytes32(name: str, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes")


def _checkpoint(index: int, raw: Any) -> OnChainCheckpoint:
    tree_size, root_hash, anchored_at, block_number = raw
    return OnChainCheckpoint(
        index=int(index),
        tree_size=int(tree_size),
        root_hash=bytes(root_hash),
        anchored_at=_utc(anchored_at),
        block_number=int(block_number),
    )


# -- factories ------------------------------------------------------------------------------------


def _http_web3(rpc_url: str, timeout_s: float) -> tuple[Web3, requests.Session]:
    from web3.middleware import ExtraDataToPOAMiddleware

    session = requests.Session()
    provider = Web3.HTTPProvider(
        rpc_url,
        request_kwargs={"timeout": timeout_s},
        session=session,
        exception_retry_configuration=None,  # fail fast: the caller decides about retries
    )
    w3 = Web3(provider)
    # Consortium networks (Besu IBFT/QBFT/Clique) carry long extraData; harmless elsewhere.
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return w3, session


def connect(
    rpc_url: str,
    private_key: str | None,
    deployments: Deployments,
    timeout_s: float = 10,
    *,
    receipt_timeout_s: float = 120.0,
    strict: bool = False,
) -> Web3Chain:
    """A client for a JSON-RPC (HTTP) endpoint, with addresses from ``deployments``.

    ``private_key`` ``None`` gives a read-only client (``anchor`` raises ``ChainError``).
    Raises ``ChainUnavailableError`` if the endpoint does not answer. If no ``LedgerAnchor`` is
    recorded for the endpoint's chain id the client has no anchor address (fine for deploying;
    anchoring and reading raise ``DeploymentError``); ``strict=True`` raises ``DeploymentError``
    right away then, and also when no code is at the recorded address. For a full check of the
    code use :func:`~evidence_ledger.ledger.deployments.verify_deployment`.
    """
    w3, session = _http_web3(rpc_url, timeout_s)
    account = _account(private_key) if private_key is not None else None
    try:
        chain = Web3Chain(w3, account=account, rpc_url=rpc_url, session=session,
                          receipt_timeout_s=receipt_timeout_s, backend="rpc")  # fmt: skip
    except BaseException:
        session.close()
        raise
    try:
        anchor = deployments.get(chain.chain_id, ANCHOR_CONTRACT)
        authority = deployments.get(chain.chain_id, AUTHORITY_CONTRACT)
        lot_status = deployments.get(chain.chain_id, LOT_STATUS_CONTRACT)
        if anchor is None and strict:
            raise DeploymentError(f"no {ANCHOR_CONTRACT} deployment recorded for chain id {chain.chain_id} ({rpc_url})")
        chain.anchor_address = to_checksum_address(anchor.address) if anchor else None
        chain.authority_address = to_checksum_address(authority.address) if authority else None
        chain.lot_status_address = lot_status.address if lot_status else None
        if strict and not chain.code_at(chain.anchor_address):
            raise DeploymentError(
                f"no code at the recorded {ANCHOR_CONTRACT} address {chain.anchor_address} on chain "
                f"{chain.chain_id} (a fresh node? deploy the contracts)"
            )
    except BaseException:
        chain.close()
        raise
    return chain


def read_only(rpc_url: str, timeout_s: float = 10, anchor_address: str | None = None) -> Web3Chain:
    """A read-only client for a verifier that has only an RPC URL (and, from a bundle, the
    contract address: pass it here or to ``fetch_anchor``)."""
    w3, session = _http_web3(rpc_url, timeout_s)
    try:
        return Web3Chain(w3, anchor_address=anchor_address, rpc_url=rpc_url, session=session, backend="rpc")
    except BaseException:
        session.close()
        raise


def memory_chain() -> Web3Chain:
    """An in-process py-evm chain with LedgerAnchor, Authority and LotStatus freshly deployed (unit tests)."""
    from web3 import EthereumTesterProvider

    provider = EthereumTesterProvider()
    key = provider.ethereum_tester.backend.account_keys[0]
    account = Account.from_key(key.to_bytes())
    w3 = Web3(provider)
    chain = Web3Chain(w3, account=account, backend="memory", poll_interval_s=0.01)
    chain.anchor_address = chain.deploy(ANCHOR_CONTRACT).address
    chain.authority_address = chain.deploy(AUTHORITY_CONTRACT).address
    chain.lot_status_address = chain.deploy(LOT_STATUS_CONTRACT).address
    return chain


def _account(private_key: str | bytes) -> LocalAccount:
    try:
        return Account.from_key(private_key)
    except (ValueError, TypeError) as e:
        raise ChainError("invalid private key") from e  # never echo the key


def load_keystore(path: Path, password: str) -> str:
    """Decrypt an Ethereum keystore (V3 JSON) file; return the private key as 0x-hex."""
    try:
        keyfile = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ChainError(f"cannot read keystore {path}: {e}") from e
    try:
        key = Account.decrypt(keyfile, password)
    except (ValueError, KeyError, TypeError) as e:
        raise ChainError(f"cannot decrypt keystore {path}: wrong password or corrupt file ({e})") from e
    return "0x" + bytes(key).hex()


def code_sha256(code: bytes) -> str:
    return hashlib.sha256(code).hexdigest()
