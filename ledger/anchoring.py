"""The anchoring worker: one ``LedgerAnchor.anchor`` transaction per signed checkpoint.

Batching: a checkpoint covers every leaf appended since the last one, taken every
``interval_s`` seconds or as soon as ``max_leaves`` leaves are waiting, or on ``flush()``.
The chain is the source of truth: each round reconciles the database with the contract, so
anchors lost by the chain (a dev chain reset) are marked orphaned and redone, and an anchor
sent just before a crash but not recorded is found again from its event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from . import tables
from .chain import AnchorReceipt, ChainClient, log_id_for
from .checkpoint import NoteSigner
from .errors import ChainError, LedgerError, NotAnchoredError
from .log import LogStore

logger = logging.getLogger(__name__)


class LogForkError(LedgerError):
    """The chain holds a different root for a tree size than this log: never expected."""


@dataclass(frozen=True, slots=True)
class AnchorRecord:
    log_name: str
    tree_size: int
    chain_id: int
    contract_address: str
    tx_hash_hex: str
    block_number: int
    block_hash_hex: str
    anchored_at: datetime
    checkpoint_index: int
    gas_used: int
    status: str


@dataclass
class AnchorHealth:
    """What ``/readyz`` reports: ``ok`` or ``degraded`` with the reason."""

    chain_ok: bool = True
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_anchor_at: datetime | None = None
    consecutive_failures: int = 0

    @property
    def status(self) -> str:
        return "ok" if self.chain_ok else "degraded"


class AnchorBook:
    """Anchors recorded in the database."""

    def __init__(self, store: LogStore) -> None:
        self.store = store

    def record(self, log_name: str, receipt: AnchorReceipt) -> AnchorRecord:
        info = self.store.log(log_name)
        values = dict(
            log_id=info.id, tree_size=receipt.tree_size, chain_id=receipt.chain_id,
            contract_address=receipt.contract_address, tx_hash=receipt.tx_hash_hex,
            block_number=receipt.block_number, block_hash=receipt.block_hash_hex,
            anchored_at=receipt.anchored_at, checkpoint_index=receipt.checkpoint_index,
            gas_used=receipt.gas_used, status="confirmed", recorded_at=datetime.now(UTC))
        try:
            with self.store.engine.begin() as conn:
                conn.execute(insert(tables.anchors).values(**values))
        except IntegrityError:
            with self.store.engine.begin() as conn:  # seen again after a reconcile: confirm it
                conn.execute(update(tables.anchors).where(
                    tables.anchors.c.chain_id == receipt.chain_id,
                    tables.anchors.c.tx_hash == receipt.tx_hash_hex).values(status="confirmed"))
        return _anchor(log_name, values)

    def latest(self, log_name: str, chain_id: int) -> AnchorRecord | None:
        info = self.store.log(log_name)
        a = tables.anchors.c
        with self.store.engine.connect() as conn:
            row = conn.execute(select(tables.anchors).where(
                a.log_id == info.id, a.chain_id == chain_id, a.status == "confirmed",
            ).order_by(a.tree_size.desc()).limit(1)).mappings().first()
        return None if row is None else _anchor(log_name, row)

    def covering(self, log_name: str, chain_id: int, index: int) -> AnchorRecord:
        """The earliest confirmed anchor whose tree contains leaf ``index``."""
        info = self.store.log(log_name)
        a = tables.anchors.c
        with self.store.engine.connect() as conn:
            row = conn.execute(select(tables.anchors).where(
                a.log_id == info.id, a.chain_id == chain_id, a.status == "confirmed",
                a.tree_size > index).order_by(a.tree_size).limit(1)).mappings().first()
        if row is None:
            raise NotAnchoredError(
                f"entry {index} of log {log_name!r} is not yet covered by an anchored checkpoint")
        return _anchor(log_name, row)

    def at_size(self, log_name: str, chain_id: int, tree_size: int) -> AnchorRecord | None:
        info = self.store.log(log_name)
        a = tables.anchors.c
        with self.store.engine.connect() as conn:
            row = conn.execute(select(tables.anchors).where(
                a.log_id == info.id, a.chain_id == chain_id, a.status == "confirmed",
                a.tree_size == tree_size)).mappings().first()
        return None if row is None else _anchor(log_name, row)

    def orphan_above(self, log_name: str, chain_id: int, tree_size: int) -> int:
        info = self.store.log(log_name)
        a = tables.anchors.c
        with self.store.engine.begin() as conn:
            res = conn.execute(update(tables.anchors).where(
                a.log_id == info.id, a.chain_id == chain_id, a.status == "confirmed",
                a.tree_size > tree_size).values(status="orphaned"))
        return res.rowcount or 0


def _anchor(log_name: str, row: Mapping) -> AnchorRecord:
    at = row["anchored_at"]
    return AnchorRecord(
        log_name, int(row["tree_size"]), int(row["chain_id"]), row["contract_address"],
        row["tx_hash"], int(row["block_number"]), row["block_hash"],
        at if at.tzinfo else at.replace(tzinfo=UTC), int(row["checkpoint_index"]),
        int(row["gas_used"]), row["status"])


class Anchorer:
    """Anchors the logs' checkpoints on one chain; ``start()`` runs it in a thread."""

    def __init__(self, store: LogStore, chain_factory: Callable[[], ChainClient],
                 signers: Mapping[str, NoteSigner], *, interval_s: float = 2.0,
                 max_leaves: int = 10_000, max_backoff_s: float = 30.0) -> None:
        self.store = store
        self.book = AnchorBook(store)
        self._chain_factory = chain_factory
        self._chain: ChainClient | None = None
        self.signers = dict(signers)
        self.interval_s = interval_s
        self.max_leaves = max_leaves
        self.max_backoff_s = max_backoff_s
        self.health = AnchorHealth()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._anchored: dict[str, int] = {}
        # Passive: another process holds the sequencer lock and anchors; this one only reads.
        self.passive = False
        store.add_listener(self._on_append)

    # -- chain --------------------------------------------------------------------------------

    def chain(self) -> ChainClient:
        if self._chain is None:
            self._chain = self._chain_factory()
        return self._chain

    @property
    def chain_id(self) -> int:
        return self.chain().chain_id

    def _drop_chain(self) -> None:
        if self._chain is not None:
            try:
                self._chain.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not mask the cause
                pass
        self._chain = None

    def anchored_size(self, log_name: str) -> int:
        """Tree size of the newest confirmed anchor (0 before the first)."""
        if self.passive or log_name not in self._anchored:
            try:
                last = self.book.latest(log_name, self.chain_id)
            except ChainError:
                return 0
            self._anchored[log_name] = last.tree_size if last else 0
        return self._anchored[log_name]

    # -- one round ----------------------------------------------------------------------------

    def anchor_log(self, log_name: str) -> AnchorRecord | None:
        """Reconcile with the chain, then anchor a checkpoint at the current size if it grew."""
        chain = self.chain()
        info = self.store.log(log_name)
        log_id = log_id_for(info.origin)
        last = self._reconcile(log_name, chain, log_id)
        anchored_size = last.tree_size if last else 0
        self._anchored[log_name] = anchored_size
        size = self.store.tree_size(log_name)
        if size <= anchored_size:
            return None
        cp = self.store.create_checkpoint(log_name, self.signers[log_name], size)
        receipt = chain.anchor(log_id, cp.tree_size, cp.root_hash)
        record = self.book.record(log_name, receipt)
        self._anchored[log_name] = record.tree_size
        self.health.last_anchor_at = record.anchored_at
        logger.info("anchored %s at size %d in tx %s (block %d, gas %d)", log_name,
                    record.tree_size, record.tx_hash_hex, record.block_number, record.gas_used)
        return record

    def _reconcile(self, log_name: str, chain: ChainClient, log_id: bytes) -> AnchorRecord | None:
        last = self.book.latest(log_name, chain.chain_id)
        on_chain = chain.latest_checkpoint(log_id)
        chain_size = on_chain.tree_size if on_chain else 0
        if last is not None and last.tree_size > chain_size:
            n = self.book.orphan_above(log_name, chain.chain_id, chain_size)
            logger.warning("chain %d no longer holds %d anchor(s) of %s above size %d; re-anchoring",
                           chain.chain_id, n, log_name, chain_size)
            last = self.book.latest(log_name, chain.chain_id)
        if on_chain is not None and (last is None or last.tree_size < chain_size):
            # Sent before a crash but never recorded: recover it from the chain.
            cp = self.store.checkpoint(log_name, chain_size)
            if cp is None or cp.root_hash != on_chain.root_hash:
                raise LogForkError(
                    f"chain {chain.chain_id} anchors {log_name!r} at size {chain_size} with root "
                    f"{on_chain.root_hash.hex()}, which this database did not sign")
            receipt = chain.find_anchor(log_id, on_chain.index)
            last = self.book.record(log_name, receipt)
        return last

    def anchor_all(self) -> list[AnchorRecord]:
        done = []
        for log_name in self.signers:
            rec = self.anchor_log(log_name)
            if rec is not None:
                done.append(rec)
        return done

    # -- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="anchorer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self._drop_chain()

    def _on_append(self, log_name: str, tree_size: int) -> None:
        if tree_size - self._anchored.get(log_name, 0) >= self.max_leaves:
            self._wake.set()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self.anchor_all()
            except ChainError as e:
                self._failed(e)
                self._drop_chain()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            except Exception as e:  # noqa: BLE001 - the worker must survive and report, not die
                logger.exception("anchoring round failed")
                self._failed(e)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            backoff = 0.5
            self.health.chain_ok = True
            self.health.consecutive_failures = 0
            with self._progress:
                self._progress.notify_all()
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def _await_sequencer(self, names: list[str], targets: dict[str, int],
                         timeout_s: float) -> list[AnchorRecord]:
        deadline = time.monotonic() + timeout_s
        while True:
            if all(self.anchored_size(n) >= t for n, t in targets.items()):
                return [r for n in names if (r := self.book.latest(n, self.chain_id)) is not None]
            if time.monotonic() >= deadline:
                raise NotAnchoredError(
                    f"not anchored within {timeout_s:g} s by the sequencer process")
            time.sleep(0.1)

    def _failed(self, e: Exception) -> None:
        self.health.chain_ok = False
        self.health.consecutive_failures += 1
        self.health.last_error = f"{type(e).__name__}: {e}"
        self.health.last_error_at = datetime.now(UTC)
        logger.warning("anchoring failed (%d in a row): %s", self.health.consecutive_failures, e)

    def flush(self, log_name: str | None = None, timeout_s: float = 30.0) -> list[AnchorRecord]:
        """Anchor now; with the worker running, wait until every named log is anchored up to
        its size at the time of the call."""
        names = [log_name] if log_name else list(self.signers)
        targets = {n: self.store.tree_size(n) for n in names}
        if self.passive:
            return self._await_sequencer(names, targets, timeout_s)
        if self._thread is None:
            return [r for n in names if (r := self.anchor_log(n)) is not None]
        deadline = time.monotonic() + timeout_s
        while True:
            if all(self._anchored.get(n, 0) >= t for n, t in targets.items()):
                return [r for n in names
                        if (r := self.book.latest(n, self.chain_id)) is not None]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotAnchoredError(
                    f"not anchored within {timeout_s:g} s: "
                    + (self.health.last_error or "the anchoring worker is behind"))
            self._wake.set()
            with self._progress:
                self._progress.wait(min(remaining, 0.5))
