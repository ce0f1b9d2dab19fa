"""A throw-away js-ipfs node for the integration tests (npm ``ipfs`` 0.66.1, see docs in notes/ipfs.md).

``IpfsNode(binary, repo_dir).start()`` initialises a repo in ``repo_dir`` with a config that keeps
everything on 127.0.0.1 (no bootstrap peers, no MDNS, API, Gateway, RPC and Swarm on free local
ports), starts ``jsipfs daemon --offline --enable-preload=false`` and waits until the RPC API
answers. ``stop()`` always ends the daemon by its PID (SIGTERM, then SIGKILL after a grace period):
js-ipfs can hang on exit instead of terminating.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
JSIPFS = PROJECT_ROOT / "node_modules" / ".bin" / "jsipfs"


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class IpfsNodeError(RuntimeError):
    pass


class IpfsNode:
    def __init__(self, binary: Path, repo_dir: Path) -> None:
        self.binary = Path(binary)
        self.repo_dir = Path(repo_dir)
        self.api_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.repo_dir.parent / f"{self.repo_dir.name}.log"

    @property
    def api_multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.api_port}/http"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "IPFS_PATH": str(self.repo_dir)}

    def _config(self) -> dict[str, object]:
        local = "/ip4/127.0.0.1/tcp/{}".format
        return {
            "Addresses": {
                "Swarm": [local(free_port())],
                "API": local(self.api_port),
                "Gateway": local(free_port()),
                "RPC": local(free_port()),
                "Announce": [],
                "NoAnnounce": [],
                "Delegates": [],
            },
            "Bootstrap": [],
            "Discovery": {"MDNS": {"Enabled": False}, "webRTCStar": {"Enabled": False}},
        }

    def init(self) -> None:
        self.repo_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.repo_dir.parent / f"{self.repo_dir.name}-config.json"
        cfg.write_text(json.dumps(self._config()))
        r = subprocess.run(
            [str(self.binary), "init", "--emptyRepo", str(cfg)],
            env=self._env(), capture_output=True, timeout=120, check=False,
        )
        if r.returncode != 0:
            raise IpfsNodeError(f"jsipfs init failed ({r.returncode}): {r.stderr.decode(errors='replace')[-2000:]}")

    def start(self, timeout_s: float = 60) -> None:
        if not (self.repo_dir / "config").exists():
            self.init()
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(self.binary), "daemon", "--offline", "--enable-preload=false"],
            env=self._env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise IpfsNodeError(f"jsipfs daemon exited with {self.proc.returncode}: {self.log_tail()}")
            if self.api_ready():
                return
            time.sleep(0.2)
        self.stop()
        raise IpfsNodeError(f"jsipfs API did not answer within {timeout_s}s: {self.log_tail()}")

    def api_ready(self) -> bool:
        try:
            req = urllib.request.Request(f"{self.api_url}/api/v0/id", method="POST")
            with urllib.request.urlopen(req, timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        return ""

    def stop(self, grace_s: float = 10) -> None:
        """End the daemon by its PID (its process group: jsipfs is a node script), however it behaves."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
