"""Append-only Merkle logs persisted in the database: the sequencer, proofs and checkpoints.

One ``LogStore`` per process owns sequencing. Appends serialise on the log's row (``FOR UPDATE``
on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so several processes may append safely; an append
is acknowledged only after its transaction commits, which is what makes it durable.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from . import canonical, merkle, tables
from .checkpoint import Checkpoint, NoteSigner
from .db import DatabaseError
from .errors import (
    EntryNotFoundError,
    LogNotFoundError,
    RecordTooLargeError,
    TreeSizeError,
)

DEFAULT_MAX_RECORD_BYTES = 64 * 1024
_MAX_UNION = 400
# Proofs in one tree share their upper levels: those come from an in-memory top over at most
# 2 ** _TOP_WIDTH_BITS subtrees (see ``_Levels``, ~70 MB per log at 19 bits, built on a log's first
# batched proofs); at a million leaves only the sibling leaf is read per leaf (~1-3 ms off a cold page
# of ~50 steps against 18 bits, measured).
_TOP_WIDTH_BITS = 19
_TOP_SIZES_KEPT = 4


@dataclass(frozen=True, slots=True)
class LogInfo:
    id: int
    name: str
    origin: str
    tree_size: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PreparedRecord:
    """A record canonicalised, salted and hashed, ready to be sequenced."""

    canonical: bytes
    record_digest: bytes
    salt: bytes
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    log_name: str
    index: int
    leaf_hash: bytes
    record_digest: bytes
    salt: bytes
    appended_at: datetime
    record_canonical: bytes | None = None

    def record(self) -> object | None:
        return None if self.record_canonical is None else json.loads(self.record_canonical)


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    log_name: str
    tree_size: int
    root_hash: bytes
    note: str
    created_at: datetime


def prepare_record(record: object, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                   salt: bytes | None = None) -> PreparedRecord:
    """Canonicalise (RFC 8785), bound the size, salt and hash one record."""
    body = canonical.canonicalize(record)
    if len(body) > max_record_bytes:
        raise RecordTooLargeError(len(body), max_record_bytes)
    digest = canonical.record_digest(body)
    salt = canonical.new_salt() if salt is None else salt
    return PreparedRecord(body, digest, salt, merkle.leaf_hash(canonical.leaf_entry(salt, digest)))


class LogStore:
    """The logs of one database. Thread-safe; one instance per process."""

    def __init__(self, engine: Engine, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        self.engine = engine
        self.max_record_bytes = max_record_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Frontier cache: valid only while its size equals the committed tree size.
        self._frontiers: dict[int, merkle.Frontier] = {}
        self._listeners: list = []
        # Complete subtree hashes never change once committed, so both caches stay valid as the
        # log grows: (log id, level) -> that level's complete nodes and every complete node above
        # them, and (log id, tree size) -> the top of that tree (a few sizes: the newest anchored).
        self._levels: dict[tuple[int, int], _Levels] = {}
        self._tops: dict[tuple[int, int], _TreeTop] = {}
        self._tops_guard = threading.Lock()

    # -- logs -------------------------------------------------------------------------------

    def ensure_log(self, name: str, origin: str) -> LogInfo:
        """Create the log if missing; an existing log keeps its origin (it is part of its identity)."""
        existing = self._find_log(name)
        if existing is not None:
            return existing
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tables.logs).values(
                    name=name, origin=origin, tree_size=0, created_at=_now()))
        except IntegrityError:
            pass  # created concurrently
        info = self._find_log(name)
        assert info is not None
        return info

    def logs(self) -> list[LogInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(tables.logs).order_by(tables.logs.c.id)).all()
        return [_log_info(r) for r in rows]

    def log(self, name: str) -> LogInfo:
        info = self._find_log(name)
        if info is None:
            known = ", ".join(l.name for l in self.logs()) or "none"
            raise LogNotFoundError(f"no log named {name!r} (known logs: {known})")
        return info

    def _find_log(self, name: str) -> LogInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.logs).where(tables.logs.c.name == name)).first()
        return None if row is None else _log_info(row)

    def add_listener(self, callback) -> None:  # type: ignore[no-untyped-def]
        """``callback(log_name, new_tree_size)`` after each committed append (wakes the anchorer)."""
        self._listeners.append(callback)

    # -- appending --------------------------------------------------------------------------

    def prepare(self, record: object) -> PreparedRecord:
        return prepare_record(record, max_record_bytes=self.max_record_bytes)

    def append(self, log_name: str, record: object, *, store_record: bool = True) -> Entry:
        return self.append_many(log_name, [record], store_record=store_record)[0]

    def append_many(self, log_name: str, records: Sequence[object], *,
                    store_record: bool = True) -> list[Entry]:
        """Append records atomically (all or none). Returns the entries once durable."""
        prepared = [self.prepare(r) for r in records]
        return self.append_prepared(log_name, prepared, store_record=store_record)

    def append_prepared(self, log_name: str, prepared: Sequence[PreparedRecord], *,
                        store_record: bool = True) -> list[Entry]:
        if not prepared:
            return []
        info = self.log(log_name)
        appended_at = _now()
        appended_at_db = _db_datetime(self.engine, appended_at)
        with self._lock(log_name):
            try:
                with self.engine.begin() as conn:
                    size = self._locked_size(conn, info.id)
                    frontier = self._frontier(conn, info.id, size)
                    frontier = merkle.Frontier(frontier.size, frontier.hashes)
                    new_nodes = frontier.extend([p.leaf_hash for p in prepared])
                    # Driver-level executemany: SQLAlchemy's per-row parameter building
                    # costs more than the database itself on bulk appends.
                    ph = _placeholder(conn)
                    conn.exec_driver_sql(
                        "INSERT INTO log_entries (log_id, idx, leaf_hash, record_digest, salt, record,"
                        f" appended_at) VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph}, {ph})",
                        [(info.id, size + i, p.leaf_hash, p.record_digest, p.salt,
                          p.canonical.decode() if store_record else None, appended_at_db)
                         for i, p in enumerate(prepared)])
                    inner = [(info.id, lv, ix, h) for lv, ix, h in new_nodes if lv > 0]
                    if inner:
                        conn.exec_driver_sql(
                            f"INSERT INTO tree_nodes (log_id, level, idx, hash) VALUES ({ph}, {ph}, {ph}, {ph})",
                            inner)
                    conn.execute(update(tables.logs).where(tables.logs.c.id == info.id)
                                 .values(tree_size=frontier.size))
            except SQLAlchemyError as e:
                self._frontiers.pop(info.id, None)
                raise DatabaseError(f"appending to log {log_name!r} failed: {e}") from e
            self._frontiers[info.id] = frontier
        for cb in self._listeners:
            cb(log_name, frontier.size)
        return [
            Entry(log_name, size + i, p.leaf_hash, p.record_digest, p.salt, appended_at,
                  p.canonical if store_record else None)
            for i, p in enumerate(prepared)
        ]

    def _lock(self, log_name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(log_name, threading.Lock())

    def _locked_size(self, conn: Connection, log_id: int) -> int:
        stmt = select(tables.logs.c.tree_size).where(tables.logs.c.id == log_id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        return int(conn.execute(stmt).scalar_one())

    def _frontier(self, conn: Connection, log_id: int, size: int) -> merkle.Frontier:
        cached = self._frontiers.get(log_id)
        if cached is not None and cached.size == size:
            return cached
        ids = merkle.Frontier.frontier_node_ids(size)
        nodes = self._get_nodes(conn, log_id, ids)
        return merkle.Frontier(size, [nodes[i] for i in ids])

    # -- reading ----------------------------------------------------------------------------

    def tree_size(self, log_name: str) -> int:
        return self.log(log_name).tree_size

    def entry(self, log_name: str, index: int) -> Entry:
        info = self.log(log_name)
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.log_entries).where(
                tables.log_entries.c.log_id == info.id, tables.log_entries.c.idx == index)).first()
        if row is None:
            raise EntryNotFoundError(
                f"log {log_name!r} has no entry {index} (its size is {info.tree_size})")
        return Entry(log_name, row.idx, row.leaf_hash, row.record_digest, row.salt,
                     _aware(row.appended_at), None if row.record is None else row.record.encode())

    def root_hash(self, log_name: str, tree_size: int | None = None) -> bytes:
        info = self.log(log_name)
        size = info.tree_size if tree_size is None else tree_size
        self._check_size(info, size)
        ids = merkle.Frontier.frontier_node_ids(size)
        with self.engine.connect() as conn:
            nodes = self._get_nodes(conn, info.id, ids)
        return merkle.Frontier(size, [nodes[i] for i in ids]).root()

    def inclusion_proof(self, log_name: str, index: int, tree_size: int) -> list[bytes]:
        info = self.log(log_name)
        self._check_size(info, tree_size)
        if not 0 <= index < tree_size:
            raise TreeSizeError(f"leaf index must be in [0, {tree_size}) for tree size {tree_size}; got {index}")
        with self.engine.connect() as conn:
            return merkle.inclusion_proof(index, tree_size,
                                          lambda ids: self._get_nodes(conn, info.id, ids))

    def inclusion_proofs(self, log_name: str, indexes: Iterable[int], tree_size: int, *,
                         with_records: bool = True) -> dict[int, tuple[Entry, list[bytes]]]:
        """Entries and their inclusion proofs in one tree, for many leaves at once (a page of
        steps): a few statements instead of several per leaf.

        ``with_records=False`` leaves the entries' records out (``record_canonical`` None): the
        caller holds them already (a domain's own copy, checked against ``record_digest``), and the
        leaf data then comes from a covering index without touching the large table rows.

        The tree is split at level ``L`` (``tree_size >> L`` below ``2 ** _TOP_WIDTH_BITS``): the
        path inside a leaf's level-``L`` subtree is read from the database; the path above it is
        the same for every leaf of that subtree and comes from the tree's top, built once per
        tree size from the stored level-``L`` nodes and kept in memory. The proofs are the
        RFC 9162 proofs ``inclusion_proof`` returns; the caller still verifies them."""
        info = self.log(log_name)
        self._check_size(info, tree_size)
        wanted = sorted(set(indexes))
        bad = [i for i in wanted if not 0 <= i < tree_size]
        if bad:
            raise TreeSizeError(f"leaf indexes must be in [0, {tree_size}); got {bad[:5]}")
        if not wanted:
            return {}
        level = max(0, tree_size.bit_length() - _TOP_WIDTH_BITS)
        e = tables.log_entries.c
        with self.engine.connect() as conn:
            top = self._top(conn, info.id, tree_size, level)
            plans: dict[int, list[list[tuple[int, int]]]] = {}
            for i in wanted:
                lo = (i >> level) << level
                width = min(lo + (1 << level), tree_size) - lo
                # The path inside the subtree [lo, lo + width), its node ids made absolute.
                plans[i] = [[(lv, (lo >> lv) + ix) for lv, ix in part]
                            for part in merkle.inclusion_proof_plan(i - lo, width)] if width > 1 else []
            entries = {}
            cols = [e.idx, e.leaf_hash, e.record_digest, e.salt, e.appended_at] + ([e.record] if with_records else [])
            if with_records:
                stmt: Any = select(*cols).where(e.log_id == info.id, e.idx.in_(bindparam("ids", expanding=True)))
            else:
                # SQLite's planner prefers the primary key's index, which is not covering.
                hint = " INDEXED BY ix_log_entries_leaf" if conn.dialect.name == "sqlite" else ""
                stmt = text(f"SELECT idx, leaf_hash, record_digest, salt, appended_at FROM log_entries{hint} "
                            "WHERE log_id = :log_id AND idx IN :ids").bindparams(
                    bindparam("ids", expanding=True), log_id=info.id).columns(*cols)
            for start in range(0, len(wanted), 500):
                for row in conn.execute(stmt, {"ids": wanted[start:start + 500]}):
                    record = row.record if with_records else None
                    entries[row.idx] = Entry(log_name, row.idx, row.leaf_hash, row.record_digest, row.salt,
                                             _aware(row.appended_at), None if record is None else record.encode())
            nodes = self._get_nodes(conn, info.id, [nid for plan in plans.values() for part in plan for nid in part])
        missing = [i for i in wanted if i not in entries]
        if missing:
            raise EntryNotFoundError(f"log {log_name!r} has no entries {missing[:5]}")
        return {i: (entries[i], [merkle.fold_range([nodes[nid] for nid in part]) for part in plans[i]]
                    + top.path(i >> level))
                for i in wanted}

    def _top(self, conn: Connection, log_id: int, size: int, level: int) -> _TreeTop:
        """The top of the tree of ``size`` above ``level`` (cached per size)."""
        key = (log_id, size)
        top = self._tops.get(key)
        if top is not None and top.levels.level == level:
            return top
        complete = size >> level
        with self._tops_guard:
            levels = self._levels.get((log_id, level))
            if levels is None:
                levels = self._levels[(log_id, level)] = _Levels(level)
                for stale in [k for k in self._levels if k[0] == log_id and k[1] < level]:
                    del self._levels[stale]  # the tree outgrew that level
        while (known := levels.count) < complete:  # only the nodes completed since the last read
            ph = _placeholder(conn)
            if level == 0:
                sql = (f"SELECT idx, leaf_hash FROM log_entries WHERE log_id = {ph} AND idx >= {ph} "
                       f"AND idx < {ph} ORDER BY idx")
                args: tuple[int, ...] = (log_id, known, complete)
            else:
                sql = (f"SELECT idx, hash FROM tree_nodes WHERE log_id = {ph} AND level = {ph} AND idx >= {ph} "
                       f"AND idx < {ph} ORDER BY idx")
                args = (log_id, level, known, complete)
            rows = conn.exec_driver_sql(sql, args).all()
            if [int(r[0]) for r in rows] != list(range(known, complete)):
                raise DatabaseError(f"tree nodes missing from the database at level {level} "
                                    f"between {known} and {complete}")
            with self._tops_guard:
                levels.extend(known, [bytes(r[1]) for r in rows])
        partial = None
        if size & ((1 << level) - 1):  # the last subtree is incomplete: its root from its nodes
            ids = merkle.range_node_ids(complete << level, size)
            got = self._get_nodes(conn, log_id, ids)
            partial = merkle.fold_range([got[i] for i in ids])
        top = _TreeTop(levels, complete, partial)
        with self._tops_guard:
            self._tops[key] = top
            while len(self._tops) > _TOP_SIZES_KEPT:
                self._tops.pop(next(iter(self._tops)))
        return top

    def consistency_proof(self, log_name: str, first: int, second: int) -> list[bytes]:
        info = self.log(log_name)
        self._check_size(info, second)
        if not 0 <= first <= second:
            raise TreeSizeError(f"first tree size must be in [0, {second}]; got {first}")
        with self.engine.connect() as conn:
            return merkle.consistency_proof(first, second,
                                            lambda ids: self._get_nodes(conn, info.id, ids))

    def _check_size(self, info: LogInfo, size: int) -> None:
        if not 0 <= size <= info.tree_size:
            raise TreeSizeError(
                f"tree size must be in [0, {info.tree_size}] for log {info.name!r}; got {size}")

    def _get_nodes(self, conn: Connection, log_id: int,
                   ids: Iterable[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        """Fetch nodes in one statement of point look-ups.

        A UNION ALL of primary-key look-ups: with a long OR list SQLite's planner scans the
        log's whole index instead (540 ms instead of 0.3 ms at a million leaves).
        """
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        ph = _placeholder(conn)
        leaf_index = " INDEXED BY ix_log_entries_leaf" if conn.dialect.name == "sqlite" else ""
        parts: list[tuple[str, tuple[int, ...]]] = []
        for lv, ix in ids:
            if lv == 0:
                parts.append((f"SELECT 0, idx, leaf_hash FROM log_entries{leaf_index} WHERE log_id = {ph} "
                              f"AND idx = {ph}", (log_id, ix)))
            else:
                parts.append((f"SELECT level, idx, hash FROM tree_nodes WHERE log_id = {ph} AND level = {ph} "
                              f"AND idx = {ph}", (log_id, lv, ix)))
        out: dict[tuple[int, int], bytes] = {}
        for start in range(0, len(parts), _MAX_UNION):  # SQLite's compound-SELECT limit is 500
            chunk = parts[start:start + _MAX_UNION]
            rows = conn.exec_driver_sql(" UNION ALL ".join(sql for sql, _ in chunk),
                                        tuple(v for _, args in chunk for v in args)).all()
            out.update({(int(lv), int(ix)): bytes(h) for lv, ix, h in rows})
        missing = [i for i in ids if i not in out]
        if missing:
            raise DatabaseError(f"tree nodes missing from the database: {missing[:5]}")
        return out

    # -- checkpoints ------------------------------------------------------------------------

    def create_checkpoint(self, log_name: str, signer: NoteSigner,
                          tree_size: int | None = None) -> StoredCheckpoint:
        """Sign a checkpoint at ``tree_size`` (default: now) and store it; idempotent per size."""
        info = self.log(log_name)
        size = info.tree_size if tree_size is None else tree_size
        existing = self.checkpoint(log_name, size)
        if existing is not None:
            return existing
        root = self.root_hash(log_name, size)
        note = signer.sign(Checkpoint(info.origin, size, root))
        created = _now()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tables.checkpoints).values(
                    log_id=info.id, tree_size=size, root_hash=root, note=note, created_at=created))
        except IntegrityError:
            stored = self.checkpoint(log_name, size)
            assert stored is not None
            return stored
        return StoredCheckpoint(log_name, size, root, note, created)

    def checkpoint(self, log_name: str, tree_size: int) -> StoredCheckpoint | None:
        info = self.log(log_name)
        c = tables.checkpoints.c
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.checkpoints).where(
                c.log_id == info.id, c.tree_size == tree_size)).first()
        return None if row is None else _checkpoint(log_name, row)

    def checkpoints(self, log_name: str, *, limit: int = 100,
                    before_size: int | None = None) -> list[StoredCheckpoint]:
        info = self.log(log_name)
        c = tables.checkpoints.c
        stmt = select(tables.checkpoints).where(c.log_id == info.id)
        if before_size is not None:
            stmt = stmt.where(c.tree_size < before_size)
        stmt = stmt.order_by(c.tree_size.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_checkpoint(log_name, r) for r in conn.execute(stmt)]

    def latest_checkpoint(self, log_name: str) -> StoredCheckpoint | None:
        found = self.checkpoints(log_name, limit=1)
        return found[0] if found else None

    def count_entries(self, log_name: str) -> int:
        info = self.log(log_name)
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(tables.log_entries).where(
                tables.log_entries.c.log_id == info.id)).scalar_one())


class _Levels:
    """The complete nodes of one log from ``level`` up: level-``level`` subtree roots in index
    order and every node above them that covers complete roots only. Append-only: a complete
    node's hash never changes, so one instance serves every tree size that splits at ``level``."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.nodes: list[list[bytes]] = [[]]  # nodes[k][j]: over roots [j << k, (j + 1) << k)

    @property
    def count(self) -> int:
        return len(self.nodes[0])

    def extend(self, start: int, roots: list[bytes]) -> None:
        if start != self.count:  # another thread extended it meanwhile
            return
        self.nodes[0].extend(roots)
        k = 0
        while len(self.nodes[k]) > 1:
            if len(self.nodes) == k + 1:
                self.nodes.append([])
            below, above = self.nodes[k], self.nodes[k + 1]
            for j in range(len(above), len(below) // 2):
                above.append(merkle.node_hash(below[2 * j], below[2 * j + 1]))
            k += 1


class _TreeTop:
    """The top of one tree: its first ``complete`` level-``L`` subtree roots and, when the tree
    size is not a multiple of ``2 ** L``, the root of the incomplete last subtree. RFC 6962 splits
    a tree at the largest power of two below its size, so the path above a level-``L`` subtree
    is that subtree root's inclusion path in the tree of these roots."""

    def __init__(self, levels: _Levels, complete: int, partial: bytes | None) -> None:
        self.levels = levels
        self.complete = complete
        self.partial = partial
        self.size = complete + (partial is not None)
        self._edge: dict[tuple[int, int], bytes] = {}
        self._ranges: dict[tuple[int, int], bytes] = {}

    def node(self, k: int, j: int) -> bytes:
        """The hash over roots ``[j << k, (j + 1) << k)``, which must lie inside this tree."""
        if (j + 1) << k <= self.complete:
            return self.levels.nodes[k][j]
        found = self._edge.get((k, j))  # a node over the incomplete last subtree
        if found is None:
            if self.partial is None or (j + 1) << k != self.size:
                raise TreeSizeError(f"no complete node ({k}, {j}) above level {self.levels.level} in this tree")
            found = self.partial if k == 0 else merkle.node_hash(self.node(k - 1, 2 * j), self.node(k - 1, 2 * j + 1))
            self._edge[(k, j)] = found
        return found

    def _range(self, lo: int, hi: int) -> bytes:
        """MTH over roots ``[lo, hi)`` (``lo`` aligned as RFC 6962 splits leave it)."""
        width = hi - lo
        if width & (width - 1) == 0:
            return self.node(width.bit_length() - 1, lo >> (width.bit_length() - 1))
        found = self._ranges.get((lo, hi))  # right-edge ranges: a few per tree, memoised
        if found is None:
            k = 1 << ((width - 1).bit_length() - 1)
            found = self._ranges[(lo, hi)] = merkle.node_hash(self.node(k.bit_length() - 1, lo // k),
                                                            self._range(lo + k, hi))
        return found

    def path(self, subtree: int) -> list[bytes]:
        """RFC 9162 ``PATH(subtree, roots)``, from the bottom up."""
        out: list[bytes] = []
        lo, hi = 0, self.size
        while hi - lo > 1:
            k = 1 << ((hi - lo - 1).bit_length() - 1)
            mid = lo + k
            if subtree < mid:
                out.append(self._range(mid, hi))
                hi = mid
            else:
                out.append(self.node(k.bit_length() - 1, lo // k))
                lo = mid
        out.reverse()
        return out


def _placeholder(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _db_datetime(engine: Engine, dt: datetime) -> object:
    # What SQLAlchemy's DateTime would bind: SQLite stores naive ISO text, PostgreSQL aware values.
    if engine.dialect.name == "sqlite":
        return dt.replace(tzinfo=None).isoformat(sep=" ")
    return dt


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime) -> datetime:
    # SQLite returns naive datetimes; every timestamp we store is UTC.
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _log_info(row) -> LogInfo:  # type: ignore[no-untyped-def]
    return LogInfo(row.id, row.name, row.origin, int(row.tree_size), _aware(row.created_at))


def _checkpoint(log_name: str, row) -> StoredCheckpoint:  # type: ignore[no-untyped-def]
    return StoredCheckpoint(log_name, int(row.tree_size), row.root_hash, row.note,
                            _aware(row.created_at))
