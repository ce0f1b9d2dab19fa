"""The committed contract artifacts (``contracts/build/<Name>.json``), loaded without a compiler."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evidence_ledger.ledger.errors import DeploymentError

__all__ = ["BUILD_DIR", "CONTRACT_NAMES", "ContractArtifact", "load_artifact"]

#: Contracts the ledger deploys, in deployment order.
CONTRACT_NAMES: tuple[str, ...] = ("LedgerAnchor", "Authority", "LotStatus")

#: Where the committed artifacts live.
BUILD_DIR: Path = Path(__file__).resolve().parent.parent / "contracts" / "build"


@dataclass(frozen=True)
class ContractArtifact:
    """A compiled contract: its ABI, creation bytecode and runtime (deployed) bytecode."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes


def _hex_to_bytes(value: Any, field: str, path: Path) -> bytes:
    if not isinstance(value, str):
        raise DeploymentError(f"{path}: {field} is not a hex string")
    text = value[2:] if value.startswith(("0x", "0X")) else value
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise DeploymentError(f"{path}: {field} is not valid hex: {exc}") from exc


def load_artifact(name: str, build_dir: Path | None = None) -> ContractArtifact:
    """Loads ``<build_dir>/<name>.json`` (default: the committed ``contracts/build``).

    Raises:
        DeploymentError: the artifact is missing or malformed.
    """
    path = Path(build_dir or BUILD_DIR) / f"{name}.json"
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise DeploymentError(
            f"contract artifact not found: {path} (run scripts/compile_contracts.py)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise DeploymentError(f"unreadable contract artifact {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("contractName") != name:
        raise DeploymentError(f"{path}: not the artifact of contract {name}")
    abi = data.get("abi")
    if not isinstance(abi, list):
        raise DeploymentError(f"{path}: abi is not a list")
    return ContractArtifact(
        name=name,
        abi=abi,
        bytecode=_hex_to_bytes(data.get("bytecode"), "bytecode", path),
        deployed_bytecode=_hex_to_bytes(data.get("deployedBytecode"), "deployedBytecode", path),
    )
