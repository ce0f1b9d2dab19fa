"""IpfsBlobStore against a real IPFS node (js-ipfs 0.66.1 from npm, started once per session).

Also the origin of the known-answer CID vectors of tests/unit/ledger/test_blobs.py: every run
re-checks that the node computes exactly the CIDs hard-coded there, and that ours equal them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence_ledger.ledger.blobs import CHUNK_SIZE, IpfsBlobStore, cid_of_bytes, decode_cid
from evidence_ledger.ledger.errors import (
    BlobBackendError,
    BlobIntegrityError,
    BlobNotFoundError,
    BlobTooLargeError,
)

from ..conftest import missing
from ..unit.ledger.test_blobs import VECTORS, vector_data
from .ipfs import JSIPFS, IpfsNode, IpfsNodeError, free_port

MiB = 1 << 20

# ipfshttpclient 0.7 passes an old urllib3 parameter on every request (harmless FutureWarning).
pytestmark = pytest.mark.filterwarnings("ignore:The 'strict' parameter:FutureWarning")


@pytest.fixture(scope="session")
def ipfs_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpfsNode]:
    if not JSIPFS.exists():
        missing(f"js-ipfs is not installed ({JSIPFS} missing; run `npm install` in the project root)")
    node = IpfsNode(JSIPFS, tmp_path_factory.mktemp("ipfs") / "repo")
    try:
        node.start(timeout_s=90)
    except IpfsNodeError as e:
        node.stop()
        pytest.fail(f"could not start js-ipfs: {e}", pytrace=False)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def store(ipfs_node: IpfsNode, tmp_path: Path) -> Iterator[IpfsBlobStore]:
    with IpfsBlobStore(ipfs_node.api_multiaddr, tmp_path / "ipfs-index", timeout_s=60) as s:
        yield s


def _client(store: IpfsBlobStore):  # type: ignore[no-untyped-def]
    return store._client


def test_round_trip(store: IpfsBlobStore, ipfs_node: IpfsNode) -> None:
    data = hashlib.shake_128(b"round trip").digest(5 * MiB + 3)
    ref = store.put(data[i : i + 300_000] for i in range(0, len(data), 300_000))
    assert ref.sha256 == hashlib.sha256(data).digest()
    assert ref.cid == cid_of_bytes(data) and ref.size_bytes == len(data)
    assert store.backend == "ipfs"
    assert store.exists(ref.sha256) and store.stat(ref.sha256) == ref
    assert store.get_bytes(ref.sha256) == data
    assert b"".join(store.open(ref.sha256)) == data
    assert store.verify(ref.sha256) == ref
    assert store.put_bytes(data) == ref  # idempotent
    # an http:// URL works as well as a multiaddr
    other = IpfsBlobStore(ipfs_node.api_url, store.index_dir)
    assert other.get_bytes(ref.sha256) == data


@pytest.mark.parametrize(("name", "spec", "cid"), VECTORS, ids=[v[0] for v in VECTORS])
def test_node_cids_equal_ours(store: IpfsBlobStore, name: str, spec: int | bytes, cid: str) -> None:
    data = vector_data(spec)
    # Ask the node directly, exactly as `ipfs add --cid-version=1 --raw-leaves` (only_hash: no side effect).
    answer = _client(store).add(
        _write_tmp(store.index_dir, data), cid_version=1, raw_leaves=True, only_hash=True, pin=False
    )
    node_cid = answer["Hash"]
    ours = cid_of_bytes(data)
    assert decode_cid(node_cid) == decode_cid(ours), f"{name}: node {node_cid} != ours {ours}"
    assert "b" + base64.b32encode(decode_cid(node_cid)).decode().lower().rstrip("=") == cid == ours
    # and through the store (which checks the node's CID against ours itself)
    assert store.put_bytes(data).cid == cid


def _write_tmp(d: Path, data: bytes) -> str:
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"vector-{hashlib.sha256(data).hexdigest()[:16]}"
    p.write_bytes(data)
    return str(p)


def test_pinned(store: IpfsBlobStore) -> None:
    ref = store.put_bytes(b"pin me\n" * 100_000)  # multi-chunk: the pin is recursive on the dag-pb root
    assert store.is_pinned(ref.sha256)
    keys = _client(store).pin.ls(type="recursive")["Keys"]
    assert any(decode_cid(k) == decode_cid(ref.cid) for k in keys)
    _client(store).pin.rm(ref.cid)
    assert not store.is_pinned(ref.sha256)


def test_integrity_checked_on_read_index_points_elsewhere(store: IpfsBlobStore) -> None:
    a = store.put_bytes(b"evidence A")
    b = store.put_bytes(b"evidence B")
    idx = store._index_path(a.sha256)
    os.chmod(idx, 0o644)
    doc = json.loads(idx.read_text())
    doc["cid"] = b.cid
    idx.write_text(json.dumps(doc))
    with pytest.raises(BlobIntegrityError) as ei:
        store.get_bytes(a.sha256)
    assert ei.value.field == "sha256" and a.sha256.hex() in str(ei.value) and b.sha256.hex() in str(ei.value)
    with pytest.raises(BlobIntegrityError):
        store.verify(a.sha256)


def test_integrity_checked_on_read_block_corrupted_in_node(store: IpfsBlobStore, ipfs_node: IpfsNode) -> None:
    data = hashlib.shake_128(b"to corrupt").digest(CHUNK_SIZE + 100)
    ref = store.put_bytes(data)
    # the second (raw) leaf: the node's flat-file blockstore keys blocks by base32 multihash
    key = base64.b32encode(b"\x12\x20" + hashlib.sha256(data[CHUNK_SIZE:]).digest()).decode().rstrip("=")
    files = list((ipfs_node.repo_dir / "blocks").rglob(f"{key}.data"))
    assert len(files) == 1, files
    raw = bytearray(files[0].read_bytes())
    raw[10] ^= 0xFF
    os.chmod(files[0], 0o644)
    files[0].write_bytes(bytes(raw))
    # js-ipfs 0.66.1 does not re-hash blocks it serves: it returns the altered bytes, and we notice
    with pytest.raises(BlobIntegrityError) as ei:
        store.get_bytes(ref.sha256)
    assert ei.value.field == "sha256"
    with pytest.raises(BlobIntegrityError):
        b"".join(store.open(ref.sha256))
    with pytest.raises(BlobIntegrityError):
        store.verify(ref.sha256)


def test_not_found(store: IpfsBlobStore) -> None:
    sha = hashlib.sha256(b"never stored").digest()
    assert not store.exists(sha)
    for call in (store.stat, store.get_bytes, store.open, store.verify):
        with pytest.raises(BlobNotFoundError):
            call(sha)


def test_size_limit_sends_nothing(store: IpfsBlobStore) -> None:
    data = b"z" * 10_000
    with pytest.raises(BlobTooLargeError) as ei:
        store.put([data[:6000], data[6000:]], max_bytes=9_999)
    assert ei.value.limit_bytes == 9_999
    assert not store.exists(hashlib.sha256(data).digest())
    assert [p for p in store.index_dir.rglob("*") if p.is_file()] == []
    assert not _client(store).add(_write_tmp(store.index_dir / "x", data), cid_version=1, raw_leaves=True,
                                  only_hash=True, pin=False)["Hash"] in {
        k for k in _client(store).pin.ls(type="recursive")["Keys"]
    }


def test_node_down_is_a_backend_error_quickly(tmp_path: Path, store: IpfsBlobStore) -> None:
    ref = store.put_bytes(b"known to the index")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        down = IpfsBlobStore(f"http://127.0.0.1:{free_port()}", store.index_dir, timeout_s=5)
    t = time.monotonic()
    with pytest.raises(BlobBackendError) as ei:
        down.put_bytes(b"anything")
    assert isinstance(ei.value.__cause__, Exception)
    with pytest.raises(BlobBackendError):
        down.get_bytes(ref.sha256)
    with pytest.raises(BlobBackendError):
        down.is_pinned(ref.sha256)
    assert time.monotonic() - t < 3
    assert down.stat(ref.sha256) == ref  # the index still answers
    assert [p for p in (store.index_dir / "tmp").iterdir()] == []
