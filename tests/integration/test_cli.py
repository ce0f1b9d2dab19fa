"""The `ledger` command line as a user runs it: chain up/status/down, tokens, verify's errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import free_port
from .server import LedgerServer


@pytest.fixture
def cli(tmp_path: Path) -> LedgerServer:
    port = free_port()
    srv = LedgerServer(tmp_path / "var", free_port(), f"http://127.0.0.1:{port}",
                       f"sqlite:///{tmp_path / 'var' / 'ledger.db'}", extra_env={"LEDGER_ANVIL_PORT": str(port)})
    srv.data_dir.mkdir(parents=True)
    return srv


def test_chain_up_status_down(cli: LedgerServer) -> None:
    st = cli.cli("chain", "status", check=False)
    assert st.returncode == 3 and "stopped" in st.stdout
    try:
        up = cli.cli("chain", "up")
        assert "anvil running" in up.stdout and "chain id 31337" in up.stdout
        again = cli.cli("chain", "up")  # idempotent: the same node
        assert again.stdout.split(",")[0] == up.stdout.split(",")[0]
        assert "running: pid" in cli.cli("chain", "status").stdout
        deployed = cli.cli("deploy")
        assert "LedgerAnchor: 0x" in deployed.stdout
        assert cli.cli("deploy").stdout == deployed.stdout  # already deployed: same addresses
    finally:
        down = cli.cli("chain", "down")
    assert "anvil stopped" in down.stdout
    assert cli.cli("chain", "status", check=False).returncode == 3
    assert (cli.data_dir / "anvil" / "state.json").exists()


def test_tokens_from_the_command_line(cli: LedgerServer) -> None:
    created = cli.cli("token", "create", "--name", "alice", "--role", "officer", "--role", "court")
    token = created.stdout.strip()
    assert token.startswith("el_") and "roles ['court', 'officer']" in created.stderr
    token_id = token.split("_")[1]
    listed = cli.cli("token", "list").stdout
    assert token_id in listed and "alice" in listed and token not in listed
    assert "revoked" in cli.cli("token", "revoke", token_id).stdout
    assert "revoked" in cli.cli("token", "list").stdout
    bad = cli.cli("token", "create", "--name", "x", "--role", "wizard", check=False)
    assert bad.returncode == 1 and "unknown roles ['wizard']" in bad.stderr
    gone = cli.cli("token", "revoke", "ffff", check=False)
    assert gone.returncode == 1 and "no active token 'ffff'" in gone.stderr


def test_verify_reports_malformed_bundles_clearly(cli: LedgerServer, tmp_path: Path) -> None:
    f = tmp_path / "b.json"
    f.write_text("{not json")
    r = cli.cli("verify", str(f), check=False)
    assert r.returncode == 1 and "INVALID bundle: not valid JSON" in r.stderr
    f.write_text(json.dumps({"type": "evidence-ledger/proof-bundle/v1"}))
    r = cli.cli("verify", str(f), "--json", check=False)
    out = json.loads(r.stdout)
    assert r.returncode == 1 and out["valid"] is False and "schema" in out["message"]
    r = cli.cli("verify", str(tmp_path / "missing.json"), check=False)
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_bad_settings_are_reported_without_a_traceback(cli: LedgerServer) -> None:
    cli.env["LEDGER_CHAIN"] = "ethereum-mainnet"
    r = cli.cli("chain", "status", check=False)
    assert r.returncode == 2 and "bad settings: LEDGER_CHAIN" in r.stderr and "Traceback" not in r.stderr
    cli.env["LEDGER_CHAIN"] = "rpc"
    r = cli.cli("serve", check=False)
    assert r.returncode == 1 and "needs LEDGER_PRIVATE_KEY or LEDGER_KEYSTORE_PATH" in r.stderr
