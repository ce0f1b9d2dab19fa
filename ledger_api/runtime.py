"""Wiring: turns one ``Settings`` into the running parts (database, logs, signers, chain, anchorer)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from evidence_ledger.flows import db as flows_db
from evidence_ledger.flows.service import FlowBook
from evidence_ledger.ledger import db
from evidence_ledger.ledger.anchoring import Anchorer
from evidence_ledger.ledger.anvil import ANVIL_DEV_PRIVATE_KEY, AnvilNode, find_anvil_binary
from evidence_ledger.ledger.chain import ChainClient, connect, load_keystore, memory_chain
from evidence_ledger.ledger.checkpoint import NoteSigner, load_or_create_key_file
from evidence_ledger.ledger.deployments import Deployments, verify_deployment
from evidence_ledger.ledger.bundle import bundle_for_entry
from evidence_ledger.ledger.errors import ChainError, ChainUnavailableError, DeploymentError, NotAnchoredError
from evidence_ledger.ledger.log import LogStore
from evidence_ledger.ledger.blobs import BlobStore, IpfsBlobStore, LocalBlobStore
from evidence_ledger.ledger.tokens import TokenBook
from evidence_ledger.notary import db as notary_db
from evidence_ledger.notary.capture import CapturePolicy
from evidence_ledger.notary.keys import load_or_create_kek
from evidence_ledger.notary.service import Notary
from evidence_ledger.trace import db as trace_db
from evidence_ledger.trace.service import Tracer

from .settings import LOG_NAMES, Settings

logger = logging.getLogger(__name__)


def anchoring_key(settings: Settings) -> str:
    """The chain key: explicit, from a keystore, or anvil's public dev key for the local anvil."""
    if settings.private_key is not None:
        return settings.private_key.get_secret_value()
    if settings.keystore_path is not None:
        password = settings.keystore_password.get_secret_value() if settings.keystore_password else ""
        return load_keystore(settings.keystore_path, password)
    if settings.chain == "anvil":
        return ANVIL_DEV_PRIVATE_KEY
    raise DeploymentError("the rpc chain needs LEDGER_PRIVATE_KEY or LEDGER_KEYSTORE_PATH")


def anvil_node(settings: Settings) -> AnvilNode:
    binary = settings.anvil_binary or find_anvil_binary(settings.node_modules_dir)
    return AnvilNode(binary=binary, state_dir=settings.anvil_dir, port=settings.anvil_port)


def chain_factory(settings: Settings) -> Callable[[], ChainClient]:
    if settings.chain == "memory":
        chain = memory_chain()  # in-process: one instance for the process's life
        return lambda: chain
    key = anchoring_key(settings)
    deployments_path = settings.resolved_deployments_path

    def make() -> ChainClient:
        deployments = Deployments.load(deployments_path)
        client = connect(settings.rpc_url, key, deployments)
        verify_deployment(client, deployments)
        return client

    return make


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    store: LogStore
    tokens: TokenBook
    signers: dict[str, NoteSigner]
    anchorer: Anchorer
    sequencer_lock: db.SequencerLock
    blobs: BlobStore | None = None
    notary: Notary | None = None
    tracer: Tracer | None = None
    flows: FlowBook | None = None
    capture_policy: CapturePolicy | None = None
    is_sequencer: bool = False
    verifier_keys: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = db.create_db_engine(settings.resolved_database_url)
        db.migrate(engine)
        store = LogStore(engine, max_record_bytes=settings.max_record_bytes)
        signers: dict[str, NoteSigner] = {}
        for name in LOG_NAMES:
            origin = settings.origin(name)
            info = store.ensure_log(name, origin)
            key = load_or_create_key_file(settings.keys_dir / f"{name}.pem")
            signers[name] = NoteSigner(info.origin, key)
        anchorer = Anchorer(store, chain_factory(settings), signers,
                            interval_s=settings.anchor_interval_s,
                            max_leaves=settings.anchor_max_leaves)
        lock_path = settings.data_dir / "sequencer.lock" if db.is_sqlite(engine) else None
        verifier_keys = {n: s.verifier_key() for n, s in signers.items()}
        blobs = make_blob_store(settings)
        notary_db.migrate(engine)
        notary = Notary(engine, store, blobs, load_or_create_kek(settings.key_encryption_key_path),
                        authority=anchorer.chain, trusted_log_keys=[verifier_keys["evidence"]],
                        max_upload_bytes=settings.max_upload_bytes)
        trace_db.migrate(engine)
        tracer = Tracer(engine, store, on_recall=lot_status_updater(anchorer))
        flows_db.migrate(engine)
        flows = FlowBook(engine, store, beacon=anchor_beacon(anchorer, "flows"))
        return cls(settings, engine, store, TokenBook(engine), signers, anchorer,
                   db.SequencerLock(engine, lock_path), blobs=blobs, notary=notary, tracer=tracer,
                   flows=flows, capture_policy=capture_policy(settings), verifier_keys=verifier_keys)

    def check_chain(self) -> None:
        """Refuse to run against a chain whose deployed code does not match the artifacts;
        a chain that is down is tolerated (records wait and are anchored when it returns)."""
        try:
            self.anchorer.chain()
        except ChainUnavailableError as e:
            logger.warning("chain unavailable at start; anchoring will retry: %s", e)
            self.anchorer.health.chain_ok = False
            self.anchorer.health.last_error = str(e)

    def bundle(self, log_name: str, index: int, *, include_record: bool = False,
               wait_s: float = 0.0) -> dict:
        """The entry's proof bundle, waiting up to ``wait_s`` for the anchor that covers it
        (``NotAnchoredError`` after that)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return bundle_for_entry(self.store, self.anchorer.book, chain_id=self.anchorer.chain_id,
                                        verifier_key=self.verifier_keys[log_name], log_name=log_name,
                                        index=index, include_record=include_record)
            except NotAnchoredError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def start(self) -> None:
        self.check_chain()
        self.is_sequencer = self.sequencer_lock.try_acquire()
        if self.is_sequencer:
            self.anchorer.start()
        else:
            self.anchorer.passive = True
            logger.info("another process holds the sequencer lock; this one will not anchor")

    def stop(self) -> None:
        self.anchorer.stop()
        self.sequencer_lock.release()
        self.engine.dispose()


def anchor_beacon(anchorer: Anchorer, log_name: str) -> Callable[[int], tuple[int, str] | None]:
    """(block number, block hash) of the confirmed anchor covering a log entry; None while there is
    none (or the chain cannot be asked): inspection draws mix that hash into their seed."""

    def beacon(index: int) -> tuple[int, str] | None:
        try:
            rec = anchorer.book.covering(log_name, anchorer.chain_id, index)
        except (NotAnchoredError, ChainError):
            return None
        return rec.block_number, rec.block_hash_hex

    return beacon


def lot_status_updater(anchorer: Anchorer) -> Callable[[list[tuple[str, str]], str, str], None]:
    """Recalls are set in the LotStatus contract so tills and phones can check them on chain.
    The recall itself is already recorded (database and trace log) when this runs; a chain that
    is down must not undo it, so failures are logged and the recall stands."""
    import hashlib

    from evidence_ledger.ledger.chain import lot_key

    def update(lots: list[tuple[str, str]], reason: str, root: str) -> None:
        keys = [lot_key(gtin, lot) for gtin, lot in lots]
        if not keys:
            return
        root_key = keys[0]
        reason_hash = hashlib.sha256(reason.encode()).digest()
        try:
            chain = anchorer.chain()
            for i in range(0, len(keys), 500):  # the contract's batch bound
                chain.set_lot_status_batch(keys[i:i + 500], "Recalled", reason_hash, root_key)
        except ChainError as e:
            logger.warning("recall of %s recorded, but setting LotStatus on chain failed: %s", root, e)

    return update


def make_blob_store(settings: Settings) -> BlobStore:
    if settings.blob_backend == "ipfs":
        return IpfsBlobStore(settings.ipfs_api_url, settings.blobs_dir / "ipfs-index")
    return LocalBlobStore(settings.blobs_dir)


def capture_policy(settings: Settings) -> CapturePolicy:
    import ipaddress

    extra_ca = settings.capture_extra_ca_file.read_bytes() if settings.capture_extra_ca_file else None
    return CapturePolicy(
        allow_networks=frozenset(ipaddress.ip_network(c, strict=False) for c in settings.capture_allow_networks),
        timeout_s=settings.capture_timeout_s, max_response_bytes=settings.capture_max_response_bytes,
        chromium_path=settings.chromium_path, extra_ca_pem=extra_ca)


def write_secret_file(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(content)
    tmp.replace(path)
