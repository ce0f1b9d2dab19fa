"""Deterministic compilation of the Solidity contracts under ``contracts/``.

The compiler is solc at the pinned version :data:`SOLC_VERSION`, driven through its standard-JSON
interface with fully pinned settings, so that the committed artifacts under ``contracts/build/``
can be reproduced byte for byte. Native solc (managed by py-solc-x) is preferred; where it is not
installed and cannot be downloaded (offline machines), the npm package ``solc`` at the same
version is run through Node. Both compile the same standard-JSON input and yield the same
artifacts (the metadata records the same compiler version, ``0.8.28+commit.7893614a``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evidence_ledger.ledger.errors import CompilerError

__all__ = [
    "EVM_VERSION",
    "OPTIMIZER_RUNS",
    "SOLC_VERSION",
    "build_standard_input",
    "compile_contracts",
    "default_node_modules_dir",
    "render_artifact",
    "write_artifacts",
]

SOLC_VERSION = "0.8.28"
EVM_VERSION = "cancun"
OPTIMIZER_RUNS = 200

#: Settings passed to solc (and recorded in every artifact). Keep them fully explicit: any
#: default left implicit could change the bytecode between compiler builds.
COMPILER_SETTINGS: dict[str, Any] = {
    "evmVersion": EVM_VERSION,
    "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
    "metadata": {"bytecodeHash": "ipfs", "appendCBOR": True, "useLiteralContent": False},
    "viaIR": False,
    "remappings": [],
    "libraries": {},
}

_OUTPUT_SELECTION = [
    "abi",
    "devdoc",
    "userdoc",
    "metadata",
    "evm.bytecode.object",
    "evm.deployedBytecode.object",
    "evm.methodIdentifiers",
]

#: Node program: read standard JSON on stdin, compile it with the solc package whose directory is
#: argv[1], and print ``{"version": solc.version(), "output": <standard JSON output string>}``.
_NODE_SCRIPT = r"""
const solc = require(process.argv[1]);
const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const input = Buffer.concat(chunks).toString("utf8");
  process.stdout.write(JSON.stringify({ version: solc.version(), output: solc.compile(input) }));
});
"""


def default_node_modules_dir() -> Path:
    """The repository's ``node_modules`` (``<repo root>/node_modules``)."""
    return Path(__file__).resolve().parents[1] / "node_modules"


def _sources(contracts_dir: Path) -> dict[str, bytes]:
    """Every ``*.sol`` file directly under ``contracts_dir``, keyed by file name, sorted."""
    if not contracts_dir.is_dir():
        raise CompilerError(f"contracts directory not found: {contracts_dir}")
    files = sorted(contracts_dir.glob("*.sol"), key=lambda p: p.name)
    if not files:
        raise CompilerError(f"no .sol files in {contracts_dir}")
    return {path.name: path.read_bytes() for path in files}


def build_standard_input(sources: Mapping[str, bytes]) -> dict[str, Any]:
    """The solc standard-JSON input compiling ``sources`` (file name -> UTF-8 source)."""
    return {
        "language": "Solidity",
        "sources": {
            name: {"content": content.decode("utf-8")} for name, content in sorted(sources.items())
        },
        "settings": {
            **json.loads(json.dumps(COMPILER_SETTINGS)),
            "outputSelection": {"*": {"*": _OUTPUT_SELECTION, "": []}},
        },
    }


# ---------------------------------------------------------------------------------- backends


def _native_solc() -> Path | None:
    """Path of a native solc binary at :data:`SOLC_VERSION`, installing it if possible."""
    try:
        import solcx
        from solcx.exceptions import SolcNotInstalled
    except ImportError:  # pragma: no cover - py-solc-x is a declared dependency
        return None
    try:
        return Path(solcx.get_executable(SOLC_VERSION))
    except SolcNotInstalled:
        pass
    except Exception:  # noqa: BLE001 - a broken solcx install: fall back to solcjs
        return None
    try:
        solcx.install_solc(SOLC_VERSION)
        return Path(solcx.get_executable(SOLC_VERSION))
    except Exception:  # noqa: BLE001 - offline, no binary for this platform, ...
        return None


def _run_native(solc_binary: Path, standard_input: dict[str, Any]) -> dict[str, Any]:
    import solcx
    from solcx.exceptions import SolcError

    try:
        output = solcx.compile_standard(standard_input, solc_binary=solc_binary)
    except SolcError as exc:
        raise CompilerError(f"solc compilation failed: {exc}") from exc
    except OSError as exc:
        raise CompilerError(f"could not run solc at {solc_binary}: {exc}") from exc
    return _check_errors(output, "solc")


def _node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise CompilerError(
            f"no native solc {SOLC_VERSION} and no Node.js to run the npm solc fallback"
        )
    return node


def _solcjs_dir(node_modules_dir: Path) -> Path:
    package_dir = node_modules_dir / "solc"
    package_json = package_dir / "package.json"
    if not package_json.is_file():
        raise CompilerError(
            f"no native solc {SOLC_VERSION} and npm solc not found under {node_modules_dir} "
            "(run `npm ci`)"
        )
    try:
        version = json.loads(package_json.read_text("utf-8"))["version"]
    except (ValueError, KeyError) as exc:
        raise CompilerError(f"unreadable {package_json}: {exc}") from exc
    if version != SOLC_VERSION:
        raise CompilerError(f"npm solc is version {version}; version {SOLC_VERSION} is required")
    return package_dir


def _run_solcjs(node_modules_dir: Path, standard_input: dict[str, Any]) -> dict[str, Any]:
    package_dir = _solcjs_dir(node_modules_dir)
    try:
        proc = subprocess.run(
            [_node_executable(), "-e", _NODE_SCRIPT, str(package_dir)],
            input=json.dumps(standard_input).encode("utf-8"),
            capture_output=True,
            check=False,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompilerError(f"could not run npm solc: {exc}") from exc
    if proc.returncode != 0:
        raise CompilerError(
            f"npm solc exited with {proc.returncode}: "
            f"{proc.stderr.decode('utf-8', 'replace').strip()}"
        )
    try:
        envelope = json.loads(proc.stdout)
        version, output_text = envelope["version"], envelope["output"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CompilerError(f"npm solc printed unexpected output: {exc}") from exc
    # e.g. "0.8.28+commit.7893614a.Emscripten.clang": the same release and commit as native solc.
    if version.split("+", 1)[0] != SOLC_VERSION:
        raise CompilerError(f"npm solc reports version {version}; {SOLC_VERSION} is required")
    try:
        output = json.loads(output_text)
    except ValueError as exc:
        raise CompilerError(f"npm solc printed invalid JSON: {exc}") from exc
    return _check_errors(output, "npm solc")


def _check_errors(output: dict[str, Any], label: str) -> dict[str, Any]:
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        messages = "\n".join(e.get("formattedMessage") or e.get("message", "") for e in errors)
        raise CompilerError(f"{label} compilation failed:\n{messages}")
    return output


# ---------------------------------------------------------------------------------- API


def compile_contracts(
    contracts_dir: Path, node_modules_dir: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Compiles every ``*.sol`` file in ``contracts_dir``; returns artifacts by contract name.

    All files are compiled together in one standard-JSON run, so they may import each other
    (``import "./Base.sol";``). Artifacts are returned only for *deployable* contracts: abstract
    contracts and interfaces (no creation bytecode) are compiled and checked, since the contracts
    inheriting them embed their code, but get no artifact of their own. Contract names must be
    unique across all files, deployable or not.

    Uses native solc :data:`SOLC_VERSION` through py-solc-x if installed or installable, else the
    npm ``solc`` package of the same version under ``node_modules_dir`` (default: the repository's
    ``node_modules``) run through Node. Each artifact holds ``contractName``, ``sourceName``,
    ``sourceSha256``, ``abi``, ``bytecode``, ``deployedBytecode`` (0x-prefixed hex),
    ``methodIdentifiers``, ``devdoc``, ``userdoc``, ``metadata`` (solc's metadata JSON string)
    and ``compiler`` (``version``, ``settings``).

    Raises:
        CompilerError: no usable compiler, a version mismatch, a compilation error, a contract
            name defined twice, or no deployable contract.
    """
    contracts_dir = Path(contracts_dir)
    sources = _sources(contracts_dir)
    standard_input = build_standard_input(sources)
    native = _native_solc()
    if native is not None:
        output = _run_native(native, standard_input)
    else:
        output = _run_solcjs(Path(node_modules_dir or default_node_modules_dir()), standard_input)

    artifacts: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for source_name in sorted(output.get("contracts", {})):
        for contract_name, data in sorted(output["contracts"][source_name].items()):
            if contract_name in seen:
                raise CompilerError(f"contract name {contract_name} is defined twice")
            seen.add(contract_name)
            bytecode = data["evm"]["bytecode"]["object"]
            if not bytecode:  # abstract contract or interface: nothing to deploy
                continue
            metadata_text = data["metadata"]
            metadata = json.loads(metadata_text)
            compiler_version = metadata["compiler"]["version"]
            if compiler_version.split("+", 1)[0] != SOLC_VERSION:
                raise CompilerError(
                    f"compiled with solc {compiler_version}; {SOLC_VERSION} is required"
                )
            artifacts[contract_name] = {
                "contractName": contract_name,
                "sourceName": source_name,
                "sourceSha256": hashlib.sha256(sources[source_name]).hexdigest(),
                "abi": data["abi"],
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
                "methodIdentifiers": data["evm"].get("methodIdentifiers", {}),
                "devdoc": data.get("devdoc", {}),
                "userdoc": data.get("userdoc", {}),
                "metadata": metadata_text,
                "compiler": {"version": compiler_version, "settings": COMPILER_SETTINGS},
            }
    if not artifacts:
        raise CompilerError(f"no deployable contracts compiled from {contracts_dir}")
    return artifacts


def render_artifact(artifact: Mapping[str, Any]) -> bytes:
    """The stable serialisation of one artifact: pretty JSON, sorted keys, trailing newline."""
    return (json.dumps(artifact, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode(
        "utf-8"
    )


def write_artifacts(artifacts: Mapping[str, Mapping[str, Any]], build_dir: Path) -> list[Path]:
    """Writes ``<build_dir>/<ContractName>.json`` for each artifact; returns the paths written.

    Files are replaced atomically (write to a temporary file, then rename).
    """
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in sorted(artifacts):
        path = build_dir / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_bytes(render_artifact(artifacts[name]))
        tmp.replace(path)
        written.append(path)
    return written
