"""Process manager for a local anvil node (Foundry), the default chain for running the ledger.

Anvil is started detached (its own session, so it outlives the command that started it), writes
its output to ``<state_dir>/anvil.log`` and its pid to ``<state_dir>/anvil.pid``, and persists the
chain to ``<state_dir>/state.json`` with ``--state <file> --state-interval <n>``:

* on a clean stop (SIGTERM) anvil dumps the state on exit;
* while running it dumps the whole state every ``state_interval_s`` seconds, so after a ``kill -9``
  only what happened in the last interval (at most ``state_interval_s`` seconds) is lost.

What survives a restart (measured with anvil 1.7.1): deployed code and storage, account nonces and
balances, every block (same numbers and hashes), every transaction and its receipt and logs. What
does not, unless ``preserve_historical_states=True`` (``--preserve-historical-states``): the state
at past blocks, i.e. ``eth_call`` with an old ``block`` argument answers ``BlockOutOfRangeError``.
The ledger never needs historical state (verification reads receipts and blocks), and keeping it
makes the state file grow with every block, so it is off by default.

Only the standard library is used here: status checks speak JSON-RPC through ``urllib``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import AnvilError

__all__ = [
    "ANVIL_DEFAULT_MNEMONIC",
    "ANVIL_DEV_ADDRESS",
    "ANVIL_DEV_PRIVATE_KEY",
    "AnvilNode",
    "AnvilStatus",
    "find_anvil_binary",
]

#: Anvil's (and Hardhat's) well-known development mnemonic. Public; never use it on a real network.
ANVIL_DEFAULT_MNEMONIC = "test test test test test test test test test test test junk"
#: Private key of the first account of :data:`ANVIL_DEFAULT_MNEMONIC` (funded with 10,000 ETH).
ANVIL_DEV_PRIVATE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
#: Address of :data:`ANVIL_DEV_PRIVATE_KEY`.
ANVIL_DEV_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

_PID_FILE = "anvil.pid"
_LOG_FILE = "anvil.log"
_STATE_FILE = "state.json"
_STATE_BACKUP = "state.json.bak"


@dataclass(frozen=True)
class AnvilStatus:
    """What :meth:`AnvilNode.status` observed."""

    running: bool
    pid: int | None
    rpc_url: str
    chain_id: int | None
    block_number: int | None
    state_file: Path | None = None


def _platform_package() -> str:
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}.get(platform.system(), "")
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"anvil-{system}-{arch}"


def find_anvil_binary(
    explicit: Path | str | None = None, search_roots: list[Path] | None = None
) -> Path:
    """Locate the anvil binary.

    ``explicit`` wins if given: the binary itself, or a folder (a project root or its
    ``node_modules``) to search as below instead of the defaults. Otherwise each search root (default: the current
    directory and the project root) is tried for the npm platform package
    ``node_modules/@foundry-rs/anvil-<os>-<arch>/bin/anvil`` (the real binary), then for the npm
    shim ``node_modules/.bin/anvil``, and finally ``anvil`` on ``PATH``.
    """
    explicit_dir = Path(explicit) if explicit is not None and Path(explicit).is_dir() else None
    if explicit_dir is not None:
        # A project root or its node_modules folder: search there.
        folder = Path(explicit)
        search_roots = [folder.parent if folder.name == "node_modules" else folder]
        explicit = None
        for candidate in (folder / "bin" / "anvil", folder / "anvil"):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise AnvilError(f"anvil binary not found at {path}")
        if not os.access(path, os.X_OK):
            raise AnvilError(f"anvil binary at {path} is not executable")
        return path
    roots = search_roots if search_roots is not None else [Path.cwd(), Path(__file__).resolve().parents[1]]
    exe = "anvil.exe" if platform.system() == "Windows" else "anvil"
    tried: list[str] = []
    for root in roots:
        for candidate in (
            root / "node_modules" / "@foundry-rs" / _platform_package() / "bin" / exe,
            root / "node_modules" / ".bin" / exe,
        ):
            tried.append(str(candidate))
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    on_path = shutil.which(exe) if explicit_dir is None else None
    if on_path:
        return Path(on_path)
    raise AnvilError(
        "anvil binary not found (install the npm package @foundry-rs/anvil, or pass its path); tried: "
        + ", ".join(tried)
    )


def _rpc(url: str, method: str, params: list | None = None, timeout_s: float = 2.0):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (local URL)
        payload = json.loads(response.read())
    if "error" in payload:
        raise AnvilError(f"{method} failed: {payload['error']}")
    return payload["result"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


class AnvilNode:
    """A local anvil whose chain is persisted under ``state_dir``.

    ``up`` is idempotent: if the anvil recorded in ``state_dir`` is alive and answers on the port,
    it is reused. ``extra_args`` are appended to the command line as they are.
    """

    def __init__(
        self,
        binary: Path,
        state_dir: Path,
        host: str = "127.0.0.1",
        port: int = 8545,
        chain_id: int = 31337,
        state_interval_s: int = 1,
        mnemonic: str | None = None,
        *,
        preserve_historical_states: bool = False,
        block_time_s: float | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        if state_interval_s < 1:
            raise ValueError("state_interval_s must be at least 1 (anvil takes whole seconds)")
        self.binary = Path(binary)
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = int(port)
        self.chain_id = int(chain_id)
        self.state_interval_s = int(state_interval_s)
        self.mnemonic = mnemonic
        self.preserve_historical_states = preserve_historical_states
        self.block_time_s = block_time_s
        self.extra_args = list(extra_args or [])
        self._proc: subprocess.Popen | None = None

    # -- paths ---------------------------------------------------------------------------------

    @property
    def rpc_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / _PID_FILE

    @property
    def log_file(self) -> Path:
        return self.state_dir / _LOG_FILE

    @property
    def state_file(self) -> Path:
        return self.state_dir / _STATE_FILE

    def command(self) -> list[str]:
        """The command line ``up`` runs."""
        cmd = [
            str(self.binary),
            "--host", self.host,
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            "--state", str(self.state_file.resolve()),
            "--state-interval", str(self.state_interval_s),
        ]  # fmt: skip
        if self.mnemonic:
            cmd += ["--mnemonic", self.mnemonic]
        if self.preserve_historical_states:
            cmd.append("--preserve-historical-states")
        if self.block_time_s:
            cmd += ["--block-time", str(self.block_time_s)]
        return cmd + self.extra_args

    # -- helpers -------------------------------------------------------------------------------

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_our_process(self, pid: int) -> bool:
        """True if ``pid`` is alive and is an anvil serving this state dir."""
        if not _pid_alive(pid):
            return False
        cmd = _cmdline(pid)
        if cmd is None:  # no /proc (not Linux): trust the pid file
            return True
        joined = " ".join(cmd)
        return "anvil" in joined and str(self.state_file.resolve()) in joined

    def _answers(self, timeout_s: float = 1.0) -> int | None:
        """The chain id if something answers JSON-RPC on the port, else None."""
        try:
            return int(_rpc(self.rpc_url, "eth_chainId", timeout_s=timeout_s), 16)
        except (OSError, ValueError, AnvilError, urllib.error.URLError):
            return None

    def _port_in_use(self) -> bool:
        with contextlib.closing(socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)) as s:
            s.settimeout(0.5)
            return s.connect_ex((self.host, self.port)) == 0

    def _check_state_file(self) -> None:
        """Prepare the state file before a start.

        * Refuse a truncated file (killed mid-dump) instead of silently starting an empty chain;
          keep a copy of the last good one in ``state.json.bak``.
        * Drop the spurious genesis blocks anvil adds: anvil 1.7.1 creates a new genesis block
          (timestamped at start-up) on every start and dumps it next to the loaded one, so after
          a few restarts the file holds several blocks number 0 and which one ``eth_getBlockByNumber(0)``
          serves is random -- block 1's ``parentHash`` would then point nowhere. The real genesis
          is the oldest; with only that one in the file anvil serves it again.
        """
        if not self.state_file.exists():
            return
        try:
            with self.state_file.open("rb") as fh:
                state = json.load(fh)
        except (ValueError, OSError) as e:
            backup = self.state_dir / _STATE_BACKUP
            hint = f"; the last good copy is {backup}" if backup.exists() else ""
            raise AnvilError(f"anvil state file {self.state_file} is unreadable ({e}){hint}") from e
        shutil.copy2(self.state_file, self.state_dir / _STATE_BACKUP)
        blocks = state.get("blocks") if isinstance(state, dict) else None
        if not isinstance(blocks, list):
            return
        try:
            geneses = [b for b in blocks if int(b["header"]["number"], 16) == 0]
            if len(geneses) < 2:
                return
            keep = min(geneses, key=lambda b: int(b["header"]["timestamp"], 16))
        except (KeyError, TypeError, ValueError):
            return  # unknown layout (another anvil version): leave it alone
        state["blocks"] = [b for b in blocks if b is keep or b not in geneses]
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, separators=(",", ":")))
        os.replace(tmp, self.state_file)

    def _write_pid(self, pid: int) -> None:
        tmp = self.pid_file.with_suffix(".pid.tmp")
        tmp.write_text(f"{pid}\n")
        os.replace(tmp, self.pid_file)

    def _remove_pid(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    # -- lifecycle -----------------------------------------------------------------------------

    def status(self) -> AnvilStatus:
        pid = self._read_pid()
        alive = pid is not None and self._is_our_process(pid)
        chain_id = block_number = None
        if alive:
            chain_id = self._answers()
            if chain_id is not None:
                with contextlib.suppress(OSError, ValueError, AnvilError, urllib.error.URLError):
                    block_number = int(_rpc(self.rpc_url, "eth_blockNumber"), 16)
        return AnvilStatus(
            running=alive and chain_id is not None,
            pid=pid if alive else None,
            rpc_url=self.rpc_url,
            chain_id=chain_id,
            block_number=block_number,
            state_file=self.state_file,
        )

    def up(self, timeout_s: float = 30) -> AnvilStatus:
        """Start anvil (or reuse the one already running from this state dir); wait for JSON-RPC."""
        pid = self._read_pid()
        if pid is not None and self._is_our_process(pid):
            if self._wait_rpc(pid, timeout_s) is not None:
                return self.status()
            raise AnvilError(
                f"anvil (pid {pid}) from {self.state_dir} is running but does not answer on "
                f"{self.rpc_url}\n{self.log_tail()}"
            )
        if pid is not None:
            self._remove_pid()  # stale

        if not self.binary.is_file():
            raise AnvilError(f"anvil binary not found at {self.binary}")
        if not os.access(self.binary, os.X_OK):
            raise AnvilError(f"anvil binary at {self.binary} is not executable")
        if self._port_in_use():
            other = self._answers()
            what = f"a JSON-RPC node with chain id {other}" if other is not None else "another process"
            raise AnvilError(
                f"cannot start anvil: {self.host}:{self.port} is already in use by {what} "
                f"(not the anvil of {self.state_dir})"
            )

        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._check_state_file()
        with self.log_file.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(self.command())}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=self.state_dir,
                )
            except OSError as e:
                raise AnvilError(f"cannot run {self.binary}: {e}") from e
        self._write_pid(self._proc.pid)

        chain_id = self._wait_rpc(self._proc.pid, timeout_s)
        if chain_id is None:
            exited = self._proc.poll() is not None
            if not exited:
                self._terminate(self._proc.pid, timeout_s=5)
            self._remove_pid()
            reason = f"exited with status {self._proc.returncode}" if exited else f"did not answer within {timeout_s}s"
            raise AnvilError(f"anvil {reason} on {self.rpc_url}; log tail:\n{self.log_tail()}")
        if chain_id != self.chain_id:
            raise AnvilError(f"anvil answered with chain id {chain_id}, expected {self.chain_id}")
        return self.status()

    def _wait_rpc(self, pid: int, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid and self._proc.poll() is not None:
                return None
            if not _pid_alive(pid):
                return None
            chain_id = self._answers(timeout_s=1.0)
            if chain_id is not None:
                return chain_id
            time.sleep(0.05)
        return None

    def _signal(self, pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            try:
                # anvil runs in its own session: pgid == pid unless started by someone else.
                if os.getpgid(pid) == pid:
                    os.killpg(pid, sig)
                    return
            except ProcessLookupError:
                return
            os.kill(pid, sig)

    def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout=timeout_s)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return True
            time.sleep(0.05)
        return not _pid_alive(pid)

    def _terminate(self, pid: int, timeout_s: float) -> None:
        self._signal(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout_s):
            self._signal(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 5):
                raise AnvilError(f"anvil (pid {pid}) did not exit after SIGKILL")

    def down(self, timeout_s: float = 10) -> None:
        """Stop anvil: SIGTERM (anvil dumps its state on a clean exit), SIGKILL after ``timeout_s``."""
        pid = self._read_pid()
        if pid is not None and self._is_our_process(pid):
            self._terminate(pid, timeout_s)
        self._remove_pid()
        self._proc = None

    def kill9(self) -> None:
        """Kill anvil with SIGKILL (no state dump): simulates a crash, for tests."""
        pid = self._read_pid()
        if pid is None or not self._is_our_process(pid):
            raise AnvilError(f"no anvil running from {self.state_dir}")
        self._signal(pid, signal.SIGKILL)
        self._wait_exit(pid, 10)
        self._remove_pid()
        self._proc = None

    def __enter__(self) -> AnvilNode:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
