"""Runs `ledger serve` as a real process, the way `make run` does, for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

LEDGER = Path(sys.executable).with_name("ledger")


class LedgerServer:
    def __init__(self, data_dir: Path, port: int, rpc_url: str, database_url: str,
                 extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")},
            "LEDGER_DATA_DIR": str(data_dir),
            "LEDGER_DATABASE_URL": database_url,
            "LEDGER_RPC_URL": rpc_url,
            "LEDGER_PORT": str(port),
            "LEDGER_ANCHOR_INTERVAL_S": "0.5",
            "LEDGER_LOG_LEVEL": "warning",
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen | None = None
        self.admin_token: str | None = None

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(LEDGER), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.data_dir.parent)
        if check and proc.returncode != 0:
            raise AssertionError(f"ledger {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start(self, timeout_s: float = 60) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "server.log", "ab")
        self.proc = subprocess.Popen([str(LEDGER), "serve"], env=self.env, stdout=log, stderr=log,
                                     cwd=self.data_dir.parent, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"server did not come up: {self.log_tail()}")
        token_file = self.data_dir / "admin.token"
        if self.admin_token is None:
            self.admin_token = token_file.read_text().strip()
            assert oct(token_file.stat().st_mode & 0o777) == "0o600"

    def log_tail(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        self.proc = None

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)
