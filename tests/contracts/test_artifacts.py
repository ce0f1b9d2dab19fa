"""The committed artifacts under contracts/build/ are exactly what the pinned compiler produces."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from evidence_ledger.ledger.compiler import (
    COMPILER_SETTINGS,
    SOLC_VERSION,
    build_standard_input,
    compile_contracts,
    render_artifact,
    write_artifacts,
)
from evidence_ledger.ledger.contracts import BUILD_DIR, CONTRACT_NAMES, load_artifact
from evidence_ledger.ledger.errors import CompilerError, DeploymentError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "contracts"


@pytest.fixture(scope="module")
def fresh_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build_dir = tmp_path_factory.mktemp("build")
    write_artifacts(compile_contracts(CONTRACTS_DIR, REPO_ROOT / "node_modules"), build_dir)
    return build_dir


def test_committed_artifacts_are_byte_identical_to_a_fresh_compile(fresh_build: Path):
    fresh = sorted(p.name for p in fresh_build.glob("*.json"))
    committed = sorted(p.name for p in BUILD_DIR.glob("*.json"))
    assert fresh == committed
    for name in fresh:
        assert (BUILD_DIR / name).read_bytes() == (fresh_build / name).read_bytes(), (
            f"contracts/build/{name} is stale: run scripts/compile_contracts.py"
        )


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_artifact_contents(name: str):
    path = BUILD_DIR / f"{name}.json"
    raw = path.read_bytes()
    data = json.loads(raw)
    # Stable serialisation: sorted keys, two-space indent, trailing newline.
    assert raw == render_artifact(data)
    assert data["contractName"] == name
    assert data["sourceName"] == f"{name}.sol"
    assert data["sourceSha256"] == hashlib.sha256((CONTRACTS_DIR / f"{name}.sol").read_bytes()).hexdigest()
    assert data["compiler"]["version"].startswith(f"{SOLC_VERSION}+commit.")
    assert data["compiler"]["settings"] == COMPILER_SETTINGS
    metadata = json.loads(data["metadata"])
    assert metadata["compiler"]["version"] == data["compiler"]["version"]
    assert metadata["settings"]["evmVersion"] == COMPILER_SETTINGS["evmVersion"]
    assert metadata["settings"]["optimizer"] == {"enabled": True, "runs": 200}
    assert metadata["settings"]["compilationTarget"] == {f"{name}.sol": name}
    assert data["bytecode"].startswith("0x6080") and data["deployedBytecode"].startswith("0x6080")
    # NatSpec present on the contract.
    assert data["userdoc"]["notice"] and data["devdoc"]["title"] == name


def test_artifacts_only_for_deployable_contracts(fresh_build: Path):
    """One artifact per deployable contract; the abstract base Owned2Step gets none."""
    assert sorted(p.stem for p in fresh_build.glob("*.json")) == sorted(CONTRACT_NAMES)
    assert not (BUILD_DIR / "Owned2Step.json").exists()


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_artifact_records_the_shared_base(name: str):
    """Both contracts inherit Owned2Step.sol: their metadata (hence bytecode) pins its hash."""
    data = json.loads((BUILD_DIR / f"{name}.json").read_bytes())
    metadata = json.loads(data["metadata"])
    assert sorted(metadata["sources"]) == sorted([f"{name}.sol", "Owned2Step.sol"])
    assert 'import "./Owned2Step.sol";' in (CONTRACTS_DIR / f"{name}.sol").read_text("utf-8")
    names = {item.get("name") for item in data["abi"]}
    assert {
        "owner", "pendingOwner", "transferOwnership", "acceptOwnership",
        "OwnershipTransferStarted", "OwnershipTransferred", "NotOwner", "NotPendingOwner",
        "ZeroAddress",
    } <= names


def test_abstract_contracts_are_compiled_but_get_no_artifact(tmp_path: Path):
    (tmp_path / "Base.sol").write_text(
        "pragma solidity 0.8.28;\n"
        "abstract contract Base { function f() external pure returns (uint256) { return 1; } }\n"
        "interface IThing { function g() external; }\n"
    )
    (tmp_path / "Impl.sol").write_text(
        'pragma solidity 0.8.28;\nimport "./Base.sol";\ncontract Impl is Base {}\n'
    )
    artifacts = compile_contracts(tmp_path, REPO_ROOT / "node_modules")
    assert sorted(artifacts) == ["Impl"]
    assert artifacts["Impl"]["methodIdentifiers"] == {"f()": "26121ff0"}
    # An error in the abstract base still fails the build.
    (tmp_path / "Base.sol").write_text(
        "pragma solidity 0.8.28;\nabstract contract Base { uint256 x = ; }\n"
    )
    with pytest.raises(CompilerError, match="compilation failed"):
        compile_contracts(tmp_path, REPO_ROOT / "node_modules")


def test_only_abstract_contracts_raise(tmp_path: Path):
    (tmp_path / "Base.sol").write_text("pragma solidity 0.8.28;\nabstract contract Base {}\n")
    with pytest.raises(CompilerError, match="no deployable contracts"):
        compile_contracts(tmp_path, REPO_ROOT / "node_modules")


def test_duplicate_contract_names_raise_even_if_abstract(tmp_path: Path):
    (tmp_path / "A.sol").write_text("pragma solidity 0.8.28;\nabstract contract Dup {}\n")
    (tmp_path / "B.sol").write_text("pragma solidity 0.8.28;\ncontract Dup {}\n")
    with pytest.raises(CompilerError, match="defined twice"):
        compile_contracts(tmp_path, REPO_ROOT / "node_modules")


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_load_artifact(name: str):
    artifact = load_artifact(name)
    data = json.loads((BUILD_DIR / f"{name}.json").read_text("utf-8"))
    assert artifact.name == name
    assert artifact.abi == data["abi"]
    assert artifact.bytecode == bytes.fromhex(data["bytecode"][2:])
    assert artifact.deployed_bytecode == bytes.fromhex(data["deployedBytecode"][2:])
    with pytest.raises(AttributeError):
        artifact.name = "other"  # type: ignore[misc]


def test_load_artifact_missing(tmp_path: Path):
    with pytest.raises(DeploymentError, match="not found"):
        load_artifact("LedgerAnchor", tmp_path)
    (tmp_path / "LedgerAnchor.json").write_text('{"contractName": "Other", "abi": []}')
    with pytest.raises(DeploymentError, match="not the artifact"):
        load_artifact("LedgerAnchor", tmp_path)


def test_standard_input_is_deterministic():
    sources = {"B.sol": b"// b", "A.sol": b"// a"}
    first = json.dumps(build_standard_input(sources))
    assert first == json.dumps(build_standard_input(dict(reversed(sources.items()))))
    assert list(json.loads(first)["sources"]) == ["A.sol", "B.sol"]


def test_compile_errors_raise_compiler_error(tmp_path: Path):
    (tmp_path / "Broken.sol").write_text("pragma solidity 0.8.28;\ncontract Broken { function f( }\n")
    with pytest.raises(CompilerError, match="compilation failed"):
        compile_contracts(tmp_path, REPO_ROOT / "node_modules")


def test_missing_contracts_dir_raises(tmp_path: Path):
    with pytest.raises(CompilerError):
        compile_contracts(tmp_path / "nope")
    with pytest.raises(CompilerError):
        compile_contracts(tmp_path)  # no .sol files


def test_npm_solc_version_mismatch_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from evidence_ledger.ledger import compiler

    monkeypatch.setattr(compiler, "_native_solc", lambda: None)
    fake = tmp_path / "node_modules" / "solc"
    fake.mkdir(parents=True)
    (fake / "package.json").write_text('{"name": "solc", "version": "0.8.27"}')
    with pytest.raises(CompilerError, match="0.8.27"):
        compile_contracts(CONTRACTS_DIR, tmp_path / "node_modules")
    with pytest.raises(CompilerError, match="not found"):
        compile_contracts(CONTRACTS_DIR, tmp_path / "elsewhere")
