"""Officers' commands: keys, and notarizing files and web pages through a ledger server's API."""

from __future__ import annotations

import base64
import json
import mimetypes
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from evidence_ledger.notary import keys

from .settings import Settings

officer_app = typer.Typer(help="Officers' signing keys.", no_args_is_help=True)
notarize_app = typer.Typer(help="Notarize files or web pages on a ledger server (LEDGER_API_URL, LEDGER_API_TOKEN).",
                           no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
CHUNK = 1 << 20


def _settings() -> Settings:
    from .cli import _settings as load  # one place turns bad settings into a clear message

    return load()


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@officer_app.command("keygen")
def keygen(out_path: Annotated[Path, typer.Option("--out", help="where the private key goes (PEM, mode 0600)")]) -> None:
    """Make an Ed25519 key the officer keeps; prints the public key to register (publicKey)."""
    from cryptography.hazmat.primitives import serialization

    if out_path.exists():
        _fail(f"{out_path} exists; refusing to overwrite a key")
    key = keys.generate_private_key()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    out_path.touch(mode=0o600)
    out_path.write_bytes(pem)
    print(base64.b64encode(keys.public_key_bytes(key)).decode())
    err.print(f"private key written to {out_path} (keep it on this device); the line above is the public key")


def _load_key(path: Path):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        _fail(f"{path} is not an Ed25519 private key")
    return key


def _client(settings: Settings) -> httpx.Client:
    if settings.api_token is None:
        _fail("set LEDGER_API_TOKEN to the officer's API token")
    return httpx.Client(base_url=settings.api_url, timeout=httpx.Timeout(30, read=600),
                        headers={"Authorization": f"Bearer {settings.api_token.get_secret_value()}"})


def _files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            found.append(p)
        else:
            _fail(f"{p} does not exist")
    return found


def _error(r: httpx.Response) -> str:
    try:
        return r.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {r.status_code}"


@notarize_app.command("files")
def notarize_files(
        paths: Annotated[list[Path], typer.Argument(help="files and folders (folders are walked)")],
        case: Annotated[str, typer.Option(help="case id")],
        key: Annotated[Optional[Path], typer.Option(help="sign here with this key (else the server signs)",
                                                    exists=True, dir_okay=False)] = None,
        description: Annotated[Optional[str], typer.Option()] = None,
        location: Annotated[Optional[str], typer.Option()] = None,
        device: Annotated[Optional[str], typer.Option()] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print results as JSON lines")] = False) -> None:
    """Notarize files (a whole folder too), streaming each upload, with a progress bar."""
    settings = _settings()
    files = _files(paths)
    if not files:
        _fail("no files to notarize")
    signing_key = _load_key(key) if key else None
    total = sum(f.stat().st_size for f in files)
    results, failures = [], 0
    with _client(settings) as client, Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=err, transient=as_json) as progress:
        task = progress.add_task(f"0/{len(files)} files", total=total)
        for n, path in enumerate(files, 1):
            def body(path: Path = path) -> Iterator[bytes]:
                with path.open("rb") as f:
                    while data := f.read(CHUNK):
                        progress.advance(task, len(data))
                        yield data

            params = {k: v for k, v in {"filename": path.name, "description": description,
                                        "location": location, "device": device}.items() if v}
            media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            endpoint = f"/api/v1/cases/{case}/files" + ("/prepare" if signing_key else "")
            r = client.post(endpoint, params=params, content=body(), headers={"content-type": media})
            if r.status_code in (200, 201) and signing_key is not None:
                signed = keys.sign_record(r.json()["record"], signing_key)
                r = client.post("/api/v1/evidence/signed", json={"record": signed})
            if r.status_code == 201:
                ev = r.json()
                results.append({"file": str(path), "evidence": ev["id"], "sha256": ev["sha256"],
                                "logIndex": ev["log_index"]})
            else:
                failures += 1
                results.append({"file": str(path), "error": _error(r)})
            progress.update(task, description=f"{n}/{len(files)} files")
    if as_json:
        for row in results:
            print(json.dumps(row))
    else:
        table = Table("file", "evidence", "sha256 / error")
        for row in results:
            table.add_row(row["file"], row.get("evidence", "[red]failed[/]"),
                          row.get("sha256", "")[:16] + "…" if "sha256" in row else f"[red]{row['error']}[/]")
        out.print(table)
        out.print(f"{len(files) - failures} notarized, {failures} failed")
    if failures:
        raise typer.Exit(1)


@notarize_app.command("url")
def notarize_url(url: str, case: Annotated[str, typer.Option(help="case id")]) -> None:
    """Capture a web page on the server (clean environment) and notarize it."""
    settings = _settings()
    with _client(settings) as client, err.status(f"capturing {url}"):
        r = client.post(f"/api/v1/cases/{case}/captures", json={"url": url}, timeout=300)
    if r.status_code != 201:
        _fail(_error(r))
    ev = r.json()
    out.print(f"notarized {url} as evidence {ev['id']} (sha256 {ev['sha256']}, {len(ev['parts'])} parts)")
