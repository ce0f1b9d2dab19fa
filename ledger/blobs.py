"""Content-addressed blob storage: evidence files and web captures, addressed by SHA-256 and IPFS CID.

Every blob has two addresses, both computed locally while its bytes stream in:

* its **SHA-256**, which is what the ledger commits to and what blobs are looked up by;
* its **IPFS CID**, exactly as ``ipfs add --cid-version=1 --raw-leaves`` computes it, so the same
  bytes get the same CID here, on our IPFS node and on any other IPFS node.

The CID is UnixFS v1 with raw leaves: the file is cut into fixed 256 KiB chunks (:data:`CHUNK_SIZE`);
each chunk is a ``raw`` (0x55) block; a file of at most one chunk is just that raw block (the empty
file is the raw block of ``b""``). Bigger files get the go-ipfs/kubo *balanced* DAG: leaves are
grouped into dag-pb (0x70) nodes of at most :data:`MAX_LINKS` links, those nodes again into nodes of
at most 174 links, and so on until one root remains (a group of a single child still gets its own
node when higher levels exist, as kubo's builder does). Each dag-pb node carries UnixFS ``Data``
with ``Type=File``, ``filesize`` and one ``blocksizes`` entry per link; each link has the child's
CID, an empty ``Name`` and ``Tsize`` = the cumulative size of the child's subtree. Nodes are encoded
by hand (dag-pb spec: ``Links`` (field 2) before ``Data`` (field 1)); CIDs are CIDv1 with a sha2-256
multihash, printed in lowercase base32 (multibase ``b``) without padding.

Two backends implement :class:`BlobStore`:

* :class:`LocalBlobStore`: files under ``<root>/sha256/ab/cd/<hex>`` (read-only), each with a small
  JSON sidecar ``<hex>.json`` holding the CID and size. Writes go to a temporary file under
  ``<root>/tmp``, are fsynced and atomically renamed into place, so readers never see a partial
  blob and concurrent puts of the same content are harmless.
* :class:`IpfsBlobStore`: an IPFS node's RPC API through ``ipfshttpclient`` (add with pinning, cat,
  pin ls), with a local ``sha256 -> cid`` index. The node's CID is checked against ours on every add.

Integrity is checked on every read: :meth:`BlobStore.open` re-hashes the stream and raises
:class:`~.errors.BlobIntegrityError` at the end if the bytes changed (a streaming consumer has by
then already seen the bytes, so it must treat the error as "discard what you received");
:meth:`BlobStore.get_bytes` only returns verified bytes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import tempfile
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from .errors import (
    BlobBackendError,
    BlobIntegrityError,
    BlobNotFoundError,
    BlobTooLargeError,
)

__all__ = [
    "CHUNK_SIZE",
    "MAX_LINKS",
    "BlobRef",
    "BlobStore",
    "CidBuilder",
    "IpfsBlobStore",
    "LocalBlobStore",
    "cid_of_bytes",
    "decode_cid",
]

#: Fixed chunk size of the UnixFS importer (``--chunker=size-262144``, the IPFS default).
CHUNK_SIZE = 262_144
#: Maximum links per dag-pb node of the balanced layout (the go-ipfs/kubo and js-ipfs default).
MAX_LINKS = 174

_CODEC_RAW = 0x55
_CODEC_DAG_PB = 0x70
_MH_SHA2_256 = b"\x12\x20"
_UNIXFS_FILE = 2

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


@dataclass(frozen=True, slots=True)
class BlobRef:
    """The two addresses and the size of a stored blob."""

    sha256: bytes
    cid: str
    size_bytes: int


# --------------------------------------------------------------------------- CID computation


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _pb_len(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _pb_uint(field: int, n: int) -> bytes:
    return _varint(field << 3) + _varint(n)


def _cid_bytes(codec: int, digest: bytes) -> bytes:
    return b"\x01" + _varint(codec) + _MH_SHA2_256 + digest


def _cid_str(cid: bytes) -> str:
    return "b" + base64.b32encode(cid).decode("ascii").lower().rstrip("=")


# A node of the DAG as its parent sees it: (binary CID, Tsize, file bytes below it).
_Entry = tuple[bytes, int, int]


def _raw_leaf(chunk: bytes | memoryview) -> _Entry:
    n = len(chunk)
    return _cid_bytes(_CODEC_RAW, hashlib.sha256(chunk).digest()), n, n


def _file_node(children: list[_Entry]) -> _Entry:
    filesize = sum(c[2] for c in children)
    unixfs = _pb_uint(1, _UNIXFS_FILE) + _pb_uint(3, filesize) + b"".join(_pb_uint(4, c[2]) for c in children)
    links = b"".join(_pb_len(2, _pb_len(1, cid) + _pb_len(2, b"") + _pb_uint(3, tsize)) for cid, tsize, _ in children)
    encoded = links + _pb_len(1, unixfs)
    tsize = len(encoded) + sum(c[1] for c in children)
    return _cid_bytes(_CODEC_DAG_PB, hashlib.sha256(encoded).digest()), tsize, filesize


class CidBuilder:
    """Incremental CIDv1 of a byte stream, as ``ipfs add --cid-version=1 --raw-leaves`` computes it.

    Memory is one chunk buffer plus at most :data:`MAX_LINKS` pending links per tree level
    (a handful of levels for any real file), independent of the file size.
    """

    __slots__ = ("_buf", "_levels", "_size", "_result")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._levels: list[list[_Entry]] = [[]]
        self._size = 0
        self._result: str | None = None

    @property
    def size_bytes(self) -> int:
        """Bytes fed so far."""
        return self._size

    def update(self, data: bytes) -> None:
        if self._result is not None:
            raise ValueError("CidBuilder.update() after finish()")
        mv = memoryview(data).cast("B")
        self._size += len(mv)
        while len(mv):
            if not self._buf and len(mv) >= CHUNK_SIZE:
                self._add(0, _raw_leaf(mv[:CHUNK_SIZE]))
                mv = mv[CHUNK_SIZE:]
                continue
            take = CHUNK_SIZE - len(self._buf)
            self._buf += mv[:take]
            mv = mv[take:]
            if len(self._buf) == CHUNK_SIZE:
                self._add(0, _raw_leaf(self._buf))
                self._buf.clear()

    def _add(self, level: int, entry: _Entry) -> None:
        # A full group is final whatever follows: emit its node to the level above right away.
        while True:
            if level == len(self._levels):
                self._levels.append([])
            group = self._levels[level]
            group.append(entry)
            if len(group) < MAX_LINKS:
                return
            entry = _file_node(group)
            self._levels[level] = []
            level += 1

    def finish(self) -> str:
        """The CID (base32 CIDv1 string). Idempotent; no more :meth:`update` afterwards."""
        if self._result is not None:
            return self._result
        levels = self._levels
        if self._buf or self._size == 0:  # the last partial chunk, or the single empty leaf
            levels[0].append(_raw_leaf(self._buf))
            self._buf = bytearray()
        root: _Entry | None = None
        i = 0
        while i < len(levels):
            above_empty = not any(levels[j] for j in range(i + 1, len(levels)))
            if above_empty and len(levels[i]) == 1:
                root = levels[i][0]
                break
            if levels[i]:
                if i + 1 == len(levels):
                    levels.append([])
                levels[i + 1].append(_file_node(levels[i]))
                levels[i] = []
            i += 1
        assert root is not None
        self._levels = []
        self._result = _cid_str(root[0])
        return self._result


def cid_of_bytes(data: bytes) -> str:
    """The CIDv1 (base32) that ``ipfs add --cid-version=1 --raw-leaves`` prints for ``data``."""
    b = CidBuilder()
    b.update(data)
    return b.finish()


def _b58decode(s: str) -> bytes:
    n = 0
    for c in s:
        try:
            n = n * 58 + _B58_INDEX[c]
        except KeyError:
            raise ValueError(f"invalid base58 character {c!r}") from None
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\x00" * (len(s) - len(s.lstrip("1"))) + body


def decode_cid(cid: str) -> bytes:
    """Binary CIDv1 of a CID string in any common form, so two CIDs can be compared.

    Accepts CIDv0 (``Qm...``, converted to its CIDv1 dag-pb equivalent) and CIDv1 in multibase
    ``b``/``B`` (base32), ``z`` (base58btc, what js-ipfs answers) and ``f``/``F`` (base16).
    Raises ``ValueError`` for anything else.
    """
    cid = cid.strip()
    if len(cid) == 46 and cid.startswith("Qm"):
        return b"\x01" + _varint(_CODEC_DAG_PB) + _b58decode(cid)
    if not cid:
        raise ValueError("empty CID")
    prefix, body = cid[0], cid[1:]
    if prefix in "bB":
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    elif prefix == "z":
        raw = _b58decode(body)
    elif prefix in "fF":
        raw = bytes.fromhex(body)
    else:
        raise ValueError(f"unsupported CID multibase prefix {prefix!r} in {cid!r}")
    if not raw.startswith(b"\x01"):
        raise ValueError(f"not a CIDv1: {cid!r}")
    return raw


# --------------------------------------------------------------------------- the protocol


@runtime_checkable
class BlobStore(Protocol):
    """What the ledger needs from a blob backend."""

    backend: str  # "local" | "ipfs"

    def put(self, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> BlobRef: ...

    def put_bytes(self, data: bytes) -> BlobRef: ...

    def open(self, sha256: bytes, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    def get_bytes(self, sha256: bytes) -> bytes: ...

    def stat(self, sha256: bytes) -> BlobRef: ...

    def exists(self, sha256: bytes) -> bool: ...

    def verify(self, sha256: bytes) -> BlobRef: ...


# --------------------------------------------------------------------------- shared helpers


def _check_sha(sha256: bytes) -> str:
    if not isinstance(sha256, (bytes, bytearray)) or len(sha256) != 32:
        raise ValueError(f"a blob address is 32 bytes of SHA-256, got {sha256!r}")
    return bytes(sha256).hex()


def _as_chunks(chunks: Iterable[bytes] | bytes) -> Iterable[bytes]:
    if isinstance(chunks, (bytes, bytearray, memoryview)):
        return (chunks,)
    return chunks


def _spool(chunks: Iterable[bytes], tmp_dir: Path, max_bytes: int | None) -> tuple[str, BlobRef]:
    """Write ``chunks`` to a fsynced temp file in ``tmp_dir`` computing both addresses on the way.

    Returns (temp path, ref). Over ``max_bytes`` the temp file is removed and BlobTooLargeError raised.
    """
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="put-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            h = hashlib.sha256()
            cb = CidBuilder()
            n = 0
            for chunk in _as_chunks(chunks):
                if not chunk:
                    continue
                n += len(chunk)
                if max_bytes is not None and n > max_bytes:
                    raise BlobTooLargeError(max_bytes, n)
                h.update(chunk)
                cb.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        return tmp, BlobRef(h.digest(), cb.finish(), n)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_json_atomic(path: Path, doc: dict[str, Any], tmp_dir: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="meta-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o444)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_meta(path: Path, sha_hex: str) -> BlobRef | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return BlobRef(bytes.fromhex(sha_hex), str(doc["cid"]), int(doc["size_bytes"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as e:
        raise BlobIntegrityError("metadata", "a JSON object with cid and size_bytes", f"unreadable {path}: {e}") from e


def _verified(
    stream: Iterator[bytes], sha_hex: str, size_bytes: int | None, close: Callable[[], None] | None = None
) -> Iterator[bytes]:
    """Pass ``stream`` through, then raise BlobIntegrityError if its SHA-256 or size is not as expected."""
    h = hashlib.sha256()
    n = 0
    try:
        for chunk in stream:
            h.update(chunk)
            n += len(chunk)
            yield chunk
    finally:
        if close is not None:
            close()
    actual = h.hexdigest()
    if actual != sha_hex:
        raise BlobIntegrityError("sha256", sha_hex, actual)
    if size_bytes is not None and n != size_bytes:
        raise BlobIntegrityError("size_bytes", str(size_bytes), str(n))


def _rehash(stream: Iterable[bytes], expected: BlobRef) -> BlobRef:
    """Full re-hash (SHA-256, CID, size) of ``stream`` against ``expected``."""
    h = hashlib.sha256()
    cb = CidBuilder()
    for chunk in stream:
        h.update(chunk)
        cb.update(chunk)
    actual = BlobRef(h.digest(), cb.finish(), cb.size_bytes)
    if actual.sha256 != expected.sha256:
        raise BlobIntegrityError("sha256", expected.sha256.hex(), actual.sha256.hex())
    if actual.size_bytes != expected.size_bytes:
        raise BlobIntegrityError("size_bytes", str(expected.size_bytes), str(actual.size_bytes))
    if decode_cid(actual.cid) != decode_cid(expected.cid):
        raise BlobIntegrityError("cid", expected.cid, actual.cid)
    return actual


# --------------------------------------------------------------------------- local backend


class LocalBlobStore:
    """Blobs as read-only files under ``<root>/sha256/ab/cd/<hex>`` with a ``<hex>.json`` sidecar."""

    backend = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        (self.root / "sha256").mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: bytes) -> Path:
        """Where the blob with this SHA-256 lives (whether or not it exists)."""
        h = _check_sha(sha256)
        return self.root / "sha256" / h[:2] / h[2:4] / h

    def _meta_path(self, sha256: bytes) -> Path:
        p = self.path_of(sha256)
        return p.with_name(p.name + ".json")

    def put(self, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> BlobRef:
        tmp, ref = _spool(chunks, self._tmp, max_bytes)
        try:
            path = self.path_of(ref.sha256)
            meta = self._meta_path(ref.sha256)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Sidecar first: whenever the blob file exists, its sidecar does too.
            if not meta.exists():
                _write_json_atomic(meta, {"cid": ref.cid, "size_bytes": ref.size_bytes, "sha256": ref.sha256.hex()}, self._tmp)
            if not path.exists():
                os.chmod(tmp, 0o444)
                os.replace(tmp, path)  # atomic; a concurrent put of the same bytes renames identical content
                _fsync_dir(path.parent)
            return ref
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def put_bytes(self, data: bytes) -> BlobRef:
        return self.put((data,))

    def open(self, sha256: bytes, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        path = self.path_of(sha256)
        ref = self.stat(sha256)
        try:
            f = path.open("rb")
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob with sha256 {sha256.hex()}") from None
        return _verified(iter(lambda: f.read(chunk_size), b""), ref.sha256.hex(), ref.size_bytes, f.close)

    def get_bytes(self, sha256: bytes) -> bytes:
        return b"".join(self.open(sha256))

    def stat(self, sha256: bytes) -> BlobRef:
        path = self.path_of(sha256)
        if not path.is_file():
            raise BlobNotFoundError(f"no blob with sha256 {sha256.hex()}")
        ref = _read_meta(self._meta_path(sha256), sha256.hex())
        if ref is None:  # sidecar lost: rebuild it from the (verified) content
            with path.open("rb") as f:
                h = hashlib.sha256()
                cb = CidBuilder()
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
                    cb.update(chunk)
            if h.digest() != bytes(sha256):
                raise BlobIntegrityError("sha256", sha256.hex(), h.hexdigest())
            ref = BlobRef(bytes(sha256), cb.finish(), cb.size_bytes)
            _write_json_atomic(self._meta_path(sha256), {"cid": ref.cid, "size_bytes": ref.size_bytes, "sha256": sha256.hex()}, self._tmp)
        return ref

    def exists(self, sha256: bytes) -> bool:
        return self.path_of(sha256).is_file()

    def verify(self, sha256: bytes) -> BlobRef:
        expected = self.stat(sha256)
        with self.path_of(sha256).open("rb") as f:
            return _rehash(iter(lambda: f.read(1 << 20), b""), expected)


# --------------------------------------------------------------------------- IPFS backend

_T = TypeVar("_T")


def _api_multiaddr(api_url: str) -> str:
    """``ipfshttpclient`` wants a multiaddr; accept ``http://host:port`` too."""
    if api_url.startswith("/"):
        return api_url
    u = urllib.parse.urlsplit(api_url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"IPFS API address must be a multiaddr or an http(s) URL, got {api_url!r}")
    port = u.port or (443 if u.scheme == "https" else 5001)
    try:
        ip = ipaddress.ip_address(u.hostname)
        proto = "ip4" if ip.version == 4 else "ip6"
    except ValueError:
        proto = "dns"
    return f"/{proto}/{u.hostname}/tcp/{port}/{u.scheme}"


def _import_ipfshttpclient() -> Any:
    with warnings.catch_warnings():  # both 0.7.0 and 0.8.0a2 warn about urllib3 on import
        warnings.simplefilter("ignore")
        import ipfshttpclient

    return ipfshttpclient


class IpfsBlobStore:
    """Blobs on an IPFS node (RPC API), pinned, with a local ``sha256 -> cid`` index.

    The index lives under ``<index_dir>/sha256/ab/<hex>.json`` (``cid`` as we computed it, base32,
    and ``size_bytes``); uploads are spooled to ``<index_dir>/tmp`` first so both addresses and the
    size limit are settled before anything reaches the node. Every failure to talk to the node
    (refused, timeout, error answer) becomes :class:`~.errors.BlobBackendError`.
    """

    backend = "ipfs"

    def __init__(self, api_url: str, index_dir: Path, timeout_s: float = 30) -> None:
        self.api_url = api_url
        self.index_dir = Path(index_dir)
        self.timeout_s = timeout_s
        self._tmp = self.index_dir / "tmp"
        (self.index_dir / "sha256").mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._ipfs = _import_ipfshttpclient()
        try:
            # Client(), not connect(): connect()'s version check refuses js-ipfs and current kubo.
            self._client = self._ipfs.Client(_api_multiaddr(api_url), timeout=timeout_s)
        except self._ipfs.exceptions.Error as e:
            raise BlobBackendError(f"bad IPFS API address {api_url!r}: {e}") from e

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()

    def __enter__(self) -> IpfsBlobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except self._ipfs.exceptions.Error as e:
            raise BlobBackendError(f"IPFS {what} via {self.api_url} failed: {e}") from e

    def _index_path(self, sha256: bytes) -> Path:
        h = _check_sha(sha256)
        return self.index_dir / "sha256" / h[:2] / f"{h}.json"

    def _lookup(self, sha256: bytes) -> BlobRef:
        ref = _read_meta(self._index_path(sha256), _check_sha(sha256))
        if ref is None:
            raise BlobNotFoundError(f"no blob with sha256 {sha256.hex()} in the IPFS index")
        return ref

    def _cat(self, cid: str) -> tuple[Iterator[bytes], Callable[[], None]]:
        stream = self._call("cat", lambda: self._client.cat(cid, stream=True))

        def chunks() -> Iterator[bytes]:
            try:
                yield from stream
            except self._ipfs.exceptions.Error as e:
                raise BlobBackendError(f"IPFS cat {cid} via {self.api_url} failed: {e}") from e

        return chunks(), stream.close

    # -- the BlobStore API

    def put(self, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> BlobRef:
        tmp, ref = _spool(chunks, self._tmp, max_bytes)
        try:
            answer = self._call(
                "add",
                lambda: self._client.add(tmp, cid_version=1, raw_leaves=True, pin=True, chunker=f"size-{CHUNK_SIZE}"),
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        node_cid = str(answer["Hash"])
        try:
            same = decode_cid(node_cid) == decode_cid(ref.cid)
        except ValueError:
            same = False
        if not same:
            with contextlib.suppress(Exception):
                self._client.pin.rm(node_cid)
            raise BlobIntegrityError("cid", ref.cid, node_cid, f"IPFS node computed CID {node_cid}, we computed {ref.cid}")
        path = self._index_path(ref.sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(path, {"cid": ref.cid, "size_bytes": ref.size_bytes, "sha256": ref.sha256.hex()}, self._tmp)
        return ref

    def put_bytes(self, data: bytes) -> BlobRef:
        return self.put((data,))

    def open(self, sha256: bytes, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        # chunk_size is a hint only: the node's HTTP response decides the chunking.
        ref = self._lookup(sha256)
        stream, close = self._cat(ref.cid)
        return _verified(stream, ref.sha256.hex(), ref.size_bytes, close)

    def get_bytes(self, sha256: bytes) -> bytes:
        return b"".join(self.open(sha256))

    def stat(self, sha256: bytes) -> BlobRef:
        return self._lookup(sha256)

    def exists(self, sha256: bytes) -> bool:
        """Whether the index knows the blob (no network call; see :meth:`is_pinned` for the node)."""
        return self._index_path(sha256).is_file()

    def verify(self, sha256: bytes) -> BlobRef:
        ref = self._lookup(sha256)
        stream, close = self._cat(ref.cid)
        try:
            return _rehash(stream, ref)
        finally:
            close()

    def is_pinned(self, sha256: bytes) -> bool:
        """Whether the node lists the blob's CID in ``pin ls``."""
        ref = self._lookup(sha256)
        try:
            answer = self._client.pin.ls(ref.cid, type="all")
        except self._ipfs.exceptions.ErrorResponse as e:
            if "not pinned" in str(e).lower():
                return False
            raise BlobBackendError(f"IPFS pin ls via {self.api_url} failed: {e}") from e
        except self._ipfs.exceptions.Error as e:
            raise BlobBackendError(f"IPFS pin ls via {self.api_url} failed: {e}") from e
        want = decode_cid(ref.cid)
        keys = answer["Keys"] if "Keys" in answer else {}
        return any(_same_cid(k, want) for k in keys)


def _same_cid(cid: str, want: bytes) -> bool:
    try:
        return decode_cid(cid) == want
    except ValueError:
        return False
