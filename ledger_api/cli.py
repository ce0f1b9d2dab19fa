"""The ``ledger`` command line: serve, chain, deploy, verify, tokens, bench."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from evidence_ledger.ledger.errors import LedgerError, VerificationError

from .settings import Settings

app = typer.Typer(help="Evidence and traceability ledger.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
chain_app = typer.Typer(help="The local anvil chain: up, down, status.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks (print a table, write JSON under bench/).", no_args_is_help=True)
app.add_typer(chain_app, name="chain")
app.add_typer(token_app, name="token")
app.add_typer(bench_app, name="bench")


def _add_officer_commands() -> None:
    from .client_cli import notarize_app, officer_app

    app.add_typer(officer_app, name="officer")
    app.add_typer(notarize_app, name="notarize")


_add_officer_commands()

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as e:
        problems = "; ".join(
            f"LEDGER_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']} (got {err.get('input')!r})"
            for err in e.errors())
        _fail(f"bad settings: {problems}", 2)
        raise  # unreachable: _fail exits


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@app.command()
def serve(host: Annotated[Optional[str], typer.Option(help="bind address")] = None,
          port: Annotated[Optional[int], typer.Option(help="port")] = None) -> None:
    """Serve the API and pages (migrates the database and creates log keys on first start)."""
    import uvicorn

    from .app import create_app
    from .runtime import Runtime, write_secret_file

    settings = _settings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        runtime = Runtime.build(settings)
        runtime.check_chain()
    except LedgerError as e:
        _fail(f"cannot start: {e}")
    if runtime.tokens.count_active() == 0:
        token, _ = runtime.tokens.create("bootstrap-admin", {"admin"})
        path = settings.data_dir / "admin.token"
        write_secret_file(path, token + "\n")
        err.print(f"first start: an admin token was written to {path} (mode 0600)")
    uvicorn.run(create_app(settings, runtime), host=host or settings.host, port=port or settings.port,
                log_level=settings.log_level)


@chain_app.command("up")
def chain_up() -> None:
    """Start the local anvil (state persisted under var/anvil)."""
    from .runtime import anvil_node

    try:
        st = anvil_node(_settings()).up()
    except LedgerError as e:
        _fail(str(e))
    out.print(f"anvil running: pid {st.pid}, {st.rpc_url}, chain id {st.chain_id}, block {st.block_number}")


@chain_app.command("down")
def chain_down() -> None:
    """Stop the local anvil (its state is dumped on the way down)."""
    from .runtime import anvil_node

    try:
        anvil_node(_settings()).down()
    except LedgerError as e:
        _fail(str(e))
    out.print("anvil stopped")


@chain_app.command("status")
def chain_status() -> None:
    """Is the local anvil running?"""
    from .runtime import anvil_node

    st = anvil_node(_settings()).status()
    if st.running:
        out.print(f"running: pid {st.pid}, {st.rpc_url}, chain id {st.chain_id}, block {st.block_number}")
    else:
        out.print("stopped")
        raise typer.Exit(3)


@app.command()
def deploy() -> None:
    """Deploy the contracts if this chain has none; record them in the deployments file."""
    from evidence_ledger.ledger.chain import connect
    from evidence_ledger.ledger.deployments import Deployments, deploy_contracts

    from .runtime import anchoring_key

    s = _settings()
    try:
        key = anchoring_key(s)
        path = s.resolved_deployments_path
        client = connect(s.rpc_url, key, Deployments.load(path))
        result = deploy_contracts(client, path)
    except LedgerError as e:
        _fail(str(e))
    for name, rec in result.items():
        out.print(f"{name}: {rec['address']}")


@app.command()
def verify(bundle: Annotated[Path, typer.Argument(help="proof bundle (JSON)", exists=True, dir_okay=False)],
           record: Annotated[Optional[Path], typer.Option(help="the record (JSON) to check against the digest",
                                                          exists=True, dir_okay=False)] = None,
           file: Annotated[Optional[Path], typer.Option(
               help="evidence file (photo, document, web archive) to check against the notarized record",
               exists=True, dir_okay=False)] = None,
           rpc: Annotated[Optional[str], typer.Option(help="EVM JSON-RPC URL: also check the anchor on chain")] = None,
           key: Annotated[Optional[list[str]], typer.Option(help="trusted log verifier key (repeatable)")] = None,
           as_json: Annotated[bool, typer.Option("--json", help="print the verdict as JSON")] = False) -> None:
    """Verify a proof bundle offline, and with --rpc against the chain. Exit 0 valid, 1 invalid."""
    from evidence_ledger.ledger.bundle import verify_bundle
    from evidence_ledger.ledger.chain import read_only

    chain = None
    try:
        if rpc:
            chain = read_only(rpc)
        report = verify_bundle(bundle.read_bytes(),
                               record_bytes=record.read_bytes() if record else None,
                               trusted_keys=key or (), chain=chain)
        matched = None
        if file is not None:
            matched = _check_evidence_file(bundle, file)
    except VerificationError as e:
        if as_json:
            print(json.dumps({"valid": False, "field": e.field, "message": str(e)}))
        else:
            err.print(f"[bold red]INVALID[/] {e}")
        raise typer.Exit(1)
    except LedgerError as e:
        _fail(str(e), 2)
    finally:
        if chain is not None:
            chain.close()
    if as_json:
        print(json.dumps({"valid": True, "log": report.log_name, "leafIndex": report.leaf_index,
                          "treeSize": report.tree_size, "anchoredAt": report.anchored_at.isoformat(),
                          "chainId": report.chain_id, "txHash": report.tx_hash_hex,
                          "chainChecked": report.chain_checked, "keyPinned": report.key_pinned,
                          "fileMatched": matched}))
        return
    out.print(f"[bold green]VALID[/] leaf {report.leaf_index} of {report.origin}, tree size "
              f"{report.tree_size}, anchored {report.anchored_at.isoformat()} on chain {report.chain_id} "
              f"(tx {report.tx_hash_hex})")
    for c in report.checks:
        out.print(f"  ✓ {c.name}: {c.detail}")
    if matched is not None:
        out.print(f"  ✓ file: is the notarized {matched}")
    if not report.chain_checked:
        out.print("  [yellow]! anchor not checked on chain (pass --rpc URL)[/]")


def _check_evidence_file(bundle_path: Path, file: Path) -> str:
    """The file against the evidence record the bundle carries; names an altered archive part."""
    from evidence_ledger.notary.service import check_file_against_record

    doc = json.loads(bundle_path.read_bytes())
    canonical_record = doc.get("record", {}).get("canonical")
    if not canonical_record:
        raise VerificationError("file", "the bundle carries no record to check the file against "
                                        "(fetch it with includeRecord=true)")
    matched, reasons = check_file_against_record(json.loads(canonical_record), file)
    if matched is None:
        raise VerificationError("file", "; ".join(reasons))
    return matched


@token_app.command("create")
def token_create(name: Annotated[str, typer.Option(help="who holds it")],
                 role: Annotated[list[str], typer.Option(help="role (repeatable)")]) -> None:
    """Create an API token; prints it once."""
    from evidence_ledger.ledger import db
    from evidence_ledger.ledger.tokens import TokenBook

    from .auth import ALL_ROLES

    unknown = set(role) - {r.value for r in ALL_ROLES}
    if unknown:
        _fail(f"unknown roles {sorted(unknown)}; expected some of {sorted(r.value for r in ALL_ROLES)}")
    s = _settings()
    engine = db.create_db_engine(s.resolved_database_url)
    db.migrate(engine)
    token, info = TokenBook(engine).create(name, set(role))
    print(token)
    err.print(f"token {info.token_id} for {name} with roles {sorted(info.roles)}")


@token_app.command("list")
def token_list() -> None:
    """List tokens (never their secrets)."""
    from evidence_ledger.ledger import db
    from evidence_ledger.ledger.tokens import TokenBook

    engine = db.create_db_engine(_settings().resolved_database_url)
    db.migrate(engine)
    for t in TokenBook(engine).list():
        state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
        out.print(f"{t.token_id}  {t.name}  {','.join(sorted(t.roles))}  {state}")


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token by id."""
    from evidence_ledger.ledger import db
    from evidence_ledger.ledger.tokens import TokenBook

    engine = db.create_db_engine(_settings().resolved_database_url)
    try:
        TokenBook(engine).revoke(token_id)
    except LedgerError as e:
        _fail(str(e))
    out.print(f"revoked {token_id}")


@bench_app.command("log")
def bench_log(records: Annotated[int, typer.Option(help="records for the bulk-append run")] = 200_000,
              naive: Annotated[int, typer.Option(help="records for the one-tx-per-record baseline")] = 200,
              proof_leaves: Annotated[int, typer.Option(help="tree size for the bundle measurements")] = 1_000_000,
              out_dir: Annotated[Path, typer.Option(help="where the JSON goes")] = Path("bench")) -> None:
    """Log benchmark against a real anvil: bulk append, time to anchor, gas, bundle size and verify time."""
    from evidence_ledger.ledger.benchmark import run_log_benchmark

    s = _settings()
    run_log_benchmark(node_modules_dir=s.node_modules_dir, records=records, naive_records=naive,
                      proof_leaves=proof_leaves, out_dir=out_dir, console=out,
                      anvil_binary=s.anvil_binary)


@bench_app.command("notary")
def bench_notary(data_mb: Annotated[int, typer.Option(help="MB hashed for the hashing/CID run")] = 256,
                 files: Annotated[int, typer.Option(help="files notarized")] = 300,
                 file_kb: Annotated[int, typer.Option(help="size of each file")] = 512,
                 pages: Annotated[int, typer.Option(help="web pages captured")] = 5,
                 out_dir: Annotated[Path, typer.Option(help="where the JSON goes")] = Path("bench")) -> None:
    """Notary benchmark: hashing + CID vs sha256, file notarization, web capture per page."""
    from evidence_ledger.notary.benchmark import run_notary_benchmark

    s = _settings()
    run_notary_benchmark(out_dir=out_dir, console=out, data_mb=data_mb, files=files, file_kb=file_kb,
                         pages=pages, chromium_path=s.chromium_path)


@bench_app.command("flows")
def bench_flows(invoices: Annotated[int, typer.Option(help="invoices generated, with their contracts and payments")]
                = 1_000_000,
                out_dir: Annotated[Path, typer.Option(help="where the JSON goes")] = Path("bench")) -> None:
    """Flows benchmark: ingest, reconciliation, cycle detection, grading vs pairwise matching."""
    from evidence_ledger.flows.benchmark import run_flows_benchmark

    run_flows_benchmark(invoices=invoices, out_dir=out_dir, console=out)


@bench_app.command("trace")
def bench_trace(events: Annotated[int, typer.Option(help="EPCIS events generated and captured")] = 1_000_000,
                page_samples: Annotated[int, typer.Option(help="consumer pages fetched over HTTP")] = 500,
                out_dir: Annotated[Path, typer.Option(help="where the JSON goes")] = Path("bench"),
                db: Annotated[Path | None, typer.Option(
                    help="directory keeping the captured database; reused by a later run with the same events")] = None,
                only: Annotated[str | None, typer.Option(help="'page': measure only the consumer page")] = None,
                page_seed: Annotated[int | None, typer.Option(help="seed picking the lots whose page is fetched")] = None,
                ) -> None:
    """Trace benchmark: capture, consumer page over HTTP, recall trace, FSMA export vs replaying events."""
    from .bench_trace import run_trace_benchmark

    run_trace_benchmark(events=events, out_dir=out_dir, console=out, page_samples=page_samples, db=db, only=only,
                        page_seed=page_seed)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
