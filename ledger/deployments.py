"""Where the contracts live on each chain, and checking that what is there is what we built.

The deployments file is JSON::

    {
      "version": 1,
      "chains": {
        "31337": {
          "LedgerAnchor": {"address": "0x..", "tx_hash": "0x..", "block_number": 1,
                           "deployed_at": "2025-01-01T00:00:00+00:00", "code_sha256": "ab.."},
          "Authority": {...}
        }
      }
    }

``code_sha256`` is the SHA-256 of the runtime code read back from the chain after deployment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .chain import ANCHOR_CONTRACT, AUTHORITY_CONTRACT, LOT_STATUS_CONTRACT, Web3Chain, _account, _http_web3, _load_artifact
from .errors import ChainError, DeploymentError

__all__ = [
    "CONTRACT_NAMES",
    "DeploymentRecord",
    "Deployments",
    "deploy_contracts",
    "expected_runtime_code",
    "verify_deployment",
]

#: The contracts every chain needs, in deployment order. A deployments file written before a
#: contract was added lacks its record: the next :func:`deploy_contracts` deploys just that one.
CONTRACT_NAMES: tuple[str, ...] = (ANCHOR_CONTRACT, AUTHORITY_CONTRACT, LOT_STATUS_CONTRACT)
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class DeploymentRecord:
    address: str
    tx_hash: str
    block_number: int
    deployed_at: datetime
    code_sha256: str

    def __getitem__(self, key: str) -> Any:
        """Mapping-style access (``record["address"]``), as in the JSON file."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["deployed_at"] = self.deployed_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeploymentRecord:
        try:
            return cls(
                address=str(data["address"]),
                tx_hash=str(data["tx_hash"]),
                block_number=int(data["block_number"]),
                deployed_at=datetime.fromisoformat(str(data["deployed_at"])),
                code_sha256=str(data["code_sha256"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DeploymentError(f"malformed deployment record {dict(data)!r}: {e}") from e


class Deployments:
    """Per chain id, contract name -> :class:`DeploymentRecord`."""

    def __init__(self, chains: Mapping[int, Mapping[str, DeploymentRecord]] | None = None) -> None:
        self._chains: dict[int, dict[str, DeploymentRecord]] = {
            int(cid): dict(records) for cid, records in (chains or {}).items()
        }

    def __repr__(self) -> str:
        return f"Deployments({ {cid: sorted(r) for cid, r in self._chains.items()} })"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Deployments) and other._chains == self._chains

    def get(self, chain_id: int, name: str) -> DeploymentRecord | None:
        return self._chains.get(int(chain_id), {}).get(name)

    def require(self, chain_id: int, name: str) -> DeploymentRecord:
        record = self.get(chain_id, name)
        if record is None:
            raise DeploymentError(f"no {name} deployment recorded for chain id {chain_id}")
        return record

    def set(self, chain_id: int, name: str, record: DeploymentRecord) -> None:
        self._chains.setdefault(int(chain_id), {})[name] = record

    def remove(self, chain_id: int, name: str | None = None) -> None:
        if name is None:
            self._chains.pop(int(chain_id), None)
        else:
            self._chains.get(int(chain_id), {}).pop(name, None)

    def chain_ids(self) -> list[int]:
        return sorted(self._chains)

    def for_chain(self, chain_id: int) -> dict[str, DeploymentRecord]:
        return dict(self._chains.get(int(chain_id), {}))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _FORMAT_VERSION,
            "chains": {
                str(cid): {name: rec.to_json() for name, rec in sorted(records.items())}
                for cid, records in sorted(self._chains.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Deployments:
        if not isinstance(data, Mapping) or data.get("version") != _FORMAT_VERSION:
            raise DeploymentError(f"unsupported deployments file (expected version {_FORMAT_VERSION})")
        chains = data.get("chains") or {}
        try:
            return cls(
                {
                    int(cid): {name: DeploymentRecord.from_json(rec) for name, rec in records.items()}
                    for cid, records in chains.items()
                }
            )
        except (AttributeError, ValueError) as e:
            raise DeploymentError(f"malformed deployments file: {e}") from e

    @classmethod
    def load(cls, path: Path) -> Deployments:
        """Read a deployments file; a missing file is an empty set of deployments."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except OSError as e:
            raise DeploymentError(f"cannot read deployments file {path}: {e}") from e
        try:
            return cls.from_json(json.loads(text))
        except ValueError as e:
            raise DeploymentError(f"deployments file {path} is not valid JSON: {e}") from e

    def save(self, path: Path) -> None:
        """Write atomically (temporary file in the same directory, fsync, rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename durable
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


# -- code comparison ------------------------------------------------------------------------------


def _immutable_ranges(artifact: Any) -> list[tuple[int, int]]:
    """(start, length) byte ranges of ``immutable`` values in the runtime code, from the artifact's
    ``immutableReferences`` (solc's ``evm.deployedBytecode.immutableReferences``) if it has them."""
    refs = getattr(artifact, "immutable_references", None)
    if refs is None:
        refs = getattr(artifact, "immutableReferences", None)
    if refs is None and isinstance(artifact, Mapping):
        refs = artifact.get("immutableReferences")
    ranges: list[tuple[int, int]] = []
    for entries in (refs or {}).values():
        for entry in entries:
            ranges.append((int(entry["start"]), int(entry["length"])))
    return ranges


def _mask(code: bytes, ranges: Iterable[tuple[int, int]]) -> bytes:
    buf = bytearray(code)
    for start, length in ranges:
        if start + length <= len(buf):
            buf[start : start + length] = b"\0" * length
    return bytes(buf)


def expected_runtime_code(name: str, artifact: Any = None) -> tuple[bytes, list[tuple[int, int]]]:
    """The artifact's runtime code and its immutable ranges (to be masked before comparing)."""
    artifact = artifact or _load_artifact(name)
    code = artifact.deployed_bytecode
    if isinstance(code, str):
        code = bytes.fromhex(code.removeprefix("0x"))
    return bytes(code), _immutable_ranges(artifact)


def _sha(code: bytes) -> str:
    return hashlib.sha256(code).hexdigest()


def check_code(name: str, address: str, onchain: bytes, artifact: Any = None) -> None:
    """Raise ``DeploymentError`` unless ``onchain`` is the artifact's runtime code (immutables masked)."""
    if not onchain:
        raise DeploymentError(f"no code deployed at {address} (expected {name})")
    expected, ranges = expected_runtime_code(name, artifact)
    got, want = _mask(onchain, ranges), _mask(expected, ranges)
    if got != want:
        raise DeploymentError(
            f"deployed code at {address} does not match the artifact {name} "
            f"(sha256 {_sha(got)} vs {_sha(want)})"
        )


# -- deploy and verify ----------------------------------------------------------------------------


def _signing_chain(target: Web3Chain | str, private_key: str | None, timeout_s: float) -> tuple[Web3Chain, bool]:
    """(chain able to sign, whether we created it and must close it)."""
    if isinstance(target, Web3Chain):
        if private_key is None or (target.account is not None and target.account.key == _account(private_key).key):
            if target.account is None:
                raise ChainError("deploying contracts needs a private key (the chain client is read-only)")
            return target, False
        chain = Web3Chain(
            target.w3,
            account=_account(private_key),
            anchor_address=target.anchor_address,
            authority_address=target.authority_address,
            rpc_url=target.rpc_url,
            backend=target.backend,
        )
        return chain, False  # shares the provider: closing is the caller's business
    if private_key is None:
        raise ChainError("deploying contracts needs a private key")
    w3, session = _http_web3(str(target), timeout_s)
    try:
        return Web3Chain(w3, account=_account(private_key), rpc_url=str(target), session=session), True
    except BaseException:
        session.close()
        raise


def deploy_contracts(
    target: Web3Chain | str,
    private_key: str | None = None,
    path: Path | None = None,
    *,
    names: Sequence[str] = CONTRACT_NAMES,
    timeout_s: float = 10,
) -> dict[str, DeploymentRecord]:
    """Deploy the contracts that are not yet on the chain and record them in the file at ``path``.

    A contract is (re)deployed if no record exists for the chain id, or if one exists but there is
    no code at its address (e.g. a fresh anvil). Existing code is kept as is: use
    :func:`verify_deployment` to check it. ``target`` is a :class:`Web3Chain` or an RPC URL; with a
    ``Web3Chain`` its addresses are updated, and its own key is used when ``private_key`` is
    ``None`` (``deploy_contracts(chain, path)`` also works). Returns the records for ``names``.
    """
    if path is None and isinstance(private_key, os.PathLike):
        private_key, path = None, Path(private_key)
    if path is None:
        raise TypeError("deploy_contracts needs the path of the deployments file")
    chain, owned = _signing_chain(target, private_key, timeout_s)
    try:
        deployments = Deployments.load(path)
        result: dict[str, DeploymentRecord] = {}
        for name in names:
            record = deployments.get(chain.chain_id, name)
            if record is not None and chain.code_at(record.address):
                result[name] = record
                continue
            deployed = chain.deploy(name)
            record = DeploymentRecord(
                address=deployed.address,
                tx_hash=deployed.tx_hash_hex,
                block_number=deployed.block_number,
                deployed_at=deployed.deployed_at,
                code_sha256=_sha(deployed.runtime_code),
            )
            deployments.set(chain.chain_id, name, record)
            deployments.save(path)  # after each one: never lose a deployment we paid for
            result[name] = record
        if isinstance(target, Web3Chain):
            if ANCHOR_CONTRACT in result:
                target.anchor_address = result[ANCHOR_CONTRACT].address
            if AUTHORITY_CONTRACT in result:
                target.authority_address = result[AUTHORITY_CONTRACT].address
            if LOT_STATUS_CONTRACT in result:
                target.lot_status_address = result[LOT_STATUS_CONTRACT].address
        return result
    finally:
        if owned:
            chain.close()


def verify_deployment(
    target: Web3Chain | str,
    deployments: Deployments,
    chain_id: int | None = None,
    *,
    names: Sequence[str] = CONTRACT_NAMES,
    timeout_s: float = 10,
) -> dict[str, DeploymentRecord]:
    """Check that every contract in ``names`` recorded for ``chain_id`` (default: the node's) has
    the artifact's runtime code at its address. Raises ``DeploymentError``; returns the records."""
    owned = False
    if isinstance(target, Web3Chain):
        chain = target
    else:
        from .chain import read_only

        chain, owned = read_only(str(target), timeout_s=timeout_s), True
    try:
        if chain_id is None:
            chain_id = chain.chain_id
        elif int(chain_id) != chain.chain_id:
            raise DeploymentError(f"the node answers chain id {chain.chain_id}, expected {chain_id}")
        result: dict[str, DeploymentRecord] = {}
        for name in names:
            record = deployments.require(chain_id, name)
            check_code(name, record.address, chain.code_at(record.address))
            result[name] = record
        return result
    finally:
        if owned:
            chain.close()
