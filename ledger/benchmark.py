"""The log benchmark: our batched anchoring against one anchor transaction per record.

Everything runs side by side in one process against one real anvil, so the figures are ratios
on the same machine at the same moment, not absolute times that drift with load.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import db, merkle
from .anchoring import Anchorer
from .anvil import ANVIL_DEV_PRIVATE_KEY, AnvilNode, find_anvil_binary
from .bundle import build_bundle, verify_bundle
from .chain import connect, log_id_for
from .checkpoint import NoteSigner, generate_signing_key
from .deployments import Deployments, deploy_contracts
from .log import LogStore


@dataclass
class Progress:
    """Minimal progress reporting; a rich Console when given, else print."""

    console: Any = None

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)
        else:
            print(text, flush=True)


def _record(i: int, rng: random.Random) -> dict[str, Any]:
    # Shaped like an evidence item: a case, a content hash, who and when.
    return {"case": f"SZ-2026-{i // 50:06d}", "item": i, "kind": "web-capture",
            "sha256": rng.getrandbits(256).to_bytes(32, "big").hex(),
            "cid": "bafkrei" + rng.getrandbits(200).to_bytes(25, "big").hex()[:52],
            "officer": f"officer-{i % 97}", "agency": "SAMR-Shenzhen",
            "capturedAt": "2026-11-21T10:00:00Z"}


def print_table(head: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """A plain left-aligned table on stdout (a console would wrap it at its width)."""
    w = [max(len(str(row[i])) for row in [*rows, head]) for i in range(len(head))]
    line = "  ".join(str(h).ljust(w[i]) for i, h in enumerate(head))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(x).ljust(w[i]) for i, x in enumerate(row)).rstrip(), flush=True)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


def run_log_benchmark(*, node_modules_dir: Path | None = None, records: int = 200_000,
                      naive_records: int = 200, proof_leaves: int = 1_000_000,
                      batch: int = 5_000, steady_seconds: float = 20.0, steady_rate: int = 2_000,
                      out_dir: Path = Path("bench"), console: Any = None,
                      anvil_binary: Path | None = None) -> dict[str, Any]:
    p = Progress(console)
    work = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    binary = find_anvil_binary(anvil_binary, [node_modules_dir.parent] if node_modules_dir else None)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = AnvilNode(binary, work / "anvil", port=port)
    node.up()
    results: dict[str, Any] = {
        "benchmark": "log", "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "database": "sqlite (WAL, synchronous=FULL)", "chain": "anvil (real node, automine)",
    }
    try:
        deployments_path = work / "deployments.json"
        deploy_contracts(node.rpc_url, ANVIL_DEV_PRIVATE_KEY, deployments_path)
        chain = connect(node.rpc_url, ANVIL_DEV_PRIVATE_KEY, Deployments.load(deployments_path))
        engine = db.create_db_engine(f"sqlite:///{work / 'ledger.db'}")
        db.migrate(engine)
        store = LogStore(engine)
        rng = random.Random(7)

        # 1. Naive baseline: one anchor transaction per record, same chain, same process.
        p.say(f"[1/4] naive baseline: {naive_records} records, one anchor transaction each")
        store.ensure_log("naive", "bench.local/naive")
        naive_id = log_id_for("bench.local/naive")
        naive_gas: list[int] = []
        t0 = time.perf_counter()
        for i in range(naive_records):
            e = store.append("naive", _record(i, rng))
            naive_gas.append(chain.anchor(naive_id, i + 1, e.leaf_hash).gas_used)
        naive_s = time.perf_counter() - t0
        naive_rps = naive_records / naive_s
        results["naive"] = {"records": naive_records, "seconds": round(naive_s, 3),
                            "records_per_s": round(naive_rps, 1),
                            "gas_per_record": round(statistics.mean(naive_gas)),
                            "time_to_anchor_s_p50": round(naive_s / naive_records, 4)}

        # 2. Bulk append, durable in the database (anchoring runs later, batched).
        total = max(records, proof_leaves)
        p.say(f"[2/4] bulk append: {total:,} records in batches of {batch:,} (durable in SQLite)")
        store.ensure_log("evidence", "bench.local/evidence")
        t0 = time.perf_counter()
        rates = []
        done = 0
        while done < total:
            n = min(batch, total - done)
            chunk = [_record(done + i, rng) for i in range(n)]
            t1 = time.perf_counter()
            store.append_many("evidence", chunk)
            rates.append(n / (time.perf_counter() - t1))
            done += n
            if done % (batch * 20) == 0:
                p.say(f"      {done:,} / {total:,}")
        bulk_s = time.perf_counter() - t0
        results["bulk_append"] = {"records": total, "batch": batch, "seconds": round(bulk_s, 2),
                                  "records_per_s_p50_batch": round(statistics.median(rates)),
                                  "records_per_s_overall_incl_record_generation": round(total / bulk_s)}

        # 3. Time to anchor and gas per record under a steady load with the anchorer running.
        p.say(f"[3/4] time to anchor: {steady_rate}/s for {steady_seconds:g} s, anchorer every 2 s")
        signer_live = NoteSigner("bench.local/live", generate_signing_key())
        store.ensure_log("live", "bench.local/live")
        anchorer = Anchorer(store, lambda: chain, {"live": signer_live}, interval_s=2.0, max_leaves=10_000)
        seen: list[tuple[float, int]] = []
        stop = threading.Event()

        def watch() -> None:
            last = 0
            while not stop.is_set():
                size = anchorer.anchored_size("live")
                if size > last:
                    seen.append((time.perf_counter(), size))
                    last = size
                time.sleep(0.005)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        anchorer.start()
        appended: list[tuple[float, int]] = []
        per_tick = max(1, steady_rate // 20)
        t_end = time.perf_counter() + steady_seconds
        i = 0
        while time.perf_counter() < t_end:
            tick = time.perf_counter()
            es = store.append_many("live", [_record(i + k, rng) for k in range(per_tick)])
            i += per_tick
            appended.append((time.perf_counter(), es[-1].index))
            time.sleep(max(0.0, 0.05 - (time.perf_counter() - tick)))
        anchorer.flush("live", timeout_s=60)
        time.sleep(0.1)
        stop.set()
        watcher.join()
        anchorer.stop()
        latencies = []
        for at, idx in appended:
            done_at = next((t for t, size in seen if size > idx and t >= at), None)
            if done_at is not None:
                latencies.append(done_at - at)
        from sqlalchemy import select

        from . import tables

        with engine.connect() as conn:
            live_id = store.log("live").id
            gas_rows = conn.execute(select(tables.anchors.c.gas_used).where(
                tables.anchors.c.log_id == live_id)).scalars().all()
        live_records = store.tree_size("live")
        results["anchored"] = {
            "records": live_records, "anchor_transactions": len(gas_rows),
            "time_to_anchor_s_p50": round(percentile(latencies, 0.5), 3),
            "time_to_anchor_s_p95": round(percentile(latencies, 0.95), 3),
            "gas_per_record": round(sum(gas_rows) / live_records, 2),
        }

        # 4. Bundle at 1M leaves: size and offline verification time.
        p.say(f"[4/4] proof bundle at {store.tree_size('evidence'):,} leaves")
        signer = NoteSigner("bench.local/evidence", generate_signing_key())
        a2 = Anchorer(store, lambda: chain, {"evidence": signer})
        a2.anchor_log("evidence")
        size = store.tree_size("evidence")
        index = rng.randrange(size)
        anchor = a2.book.covering("evidence", chain.chain_id, index)
        cp = store.checkpoint("evidence", anchor.tree_size)
        t0 = time.perf_counter()
        proof = store.inclusion_proof("evidence", index, anchor.tree_size)
        proof_ms = (time.perf_counter() - t0) * 1000
        bundle = build_bundle(log=store.log("evidence"), verifier_key=signer.verifier_key(),
                              entry=store.entry("evidence", index), proof=proof, checkpoint=cp,
                              anchor=anchor)
        encoded = json.dumps(bundle, separators=(",", ":")).encode()
        runs = 200
        t0 = time.perf_counter()
        for _ in range(runs):
            verify_bundle(encoded)
        verify_ms = (time.perf_counter() - t0) * 1000 / runs
        t0 = time.perf_counter()
        verify_bundle(encoded, chain=chain)
        verify_chain_ms = (time.perf_counter() - t0) * 1000
        # Baseline for verification: without a proof, a verifier rehashes every leaf.
        leaves = [merkle.leaf_hash(os.urandom(64)) for _ in range(size)]
        t0 = time.perf_counter()
        merkle.root_from_leaf_hashes(leaves)
        rehash_ms = (time.perf_counter() - t0) * 1000
        results["bundle"] = {"tree_size": size, "proof_hashes": len(proof),
                             "bytes": len(encoded), "bytes_pretty": len(json.dumps(bundle, indent=2)),
                             "proof_generation_ms": round(proof_ms, 2),
                             "verify_offline_ms": round(verify_ms, 3),
                             "verify_with_chain_ms": round(verify_chain_ms, 2),
                             "baseline_rehash_all_leaves_ms": round(rehash_ms, 1)}
        results["ratios"] = {
            "bulk_append_vs_naive_records_per_s": round(
                results["bulk_append"]["records_per_s_p50_batch"] / naive_rps, 1),
            "naive_gas_vs_batched_gas_per_record": round(
                results["naive"]["gas_per_record"] / max(results["anchored"]["gas_per_record"], 1e-9), 1),
            "rehash_vs_proof_verify_time": round(rehash_ms / verify_ms, 1),
        }
        chain.close()
        engine.dispose()
    finally:
        node.down()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "log.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    _print_table(results, p)
    p.say(f"written {out}")
    return results


def _print_table(r: dict[str, Any], p: Progress) -> None:
    rows = [
        ("bulk append, records/s (median batch)", f"{r['bulk_append']['records_per_s_p50_batch']:,}",
         f"{r['naive']['records_per_s']:,}", f"{r['ratios']['bulk_append_vs_naive_records_per_s']}x"),
        ("time to anchor p50 / p95, s", f"{r['anchored']['time_to_anchor_s_p50']} / {r['anchored']['time_to_anchor_s_p95']}",
         f"{r['naive']['time_to_anchor_s_p50']}", ""),
        ("gas per record", f"{r['anchored']['gas_per_record']:,}", f"{r['naive']['gas_per_record']:,}",
         f"{r['ratios']['naive_gas_vs_batched_gas_per_record']}x less"),
        (f"bundle bytes at {r['bundle']['tree_size']:,} leaves", f"{r['bundle']['bytes']:,}", "", ""),
        ("verify offline, ms", f"{r['bundle']['verify_offline_ms']}",
         f"{r['bundle']['baseline_rehash_all_leaves_ms']} (rehash all)", f"{r['ratios']['rehash_vs_proof_verify_time']}x"),
    ]
    w = [max(len(str(row[i])) for row in rows + [("measure", "batched log", "baseline", "ratio")]) for i in range(4)]
    line = "  ".join(h.ljust(w[i]) for i, h in enumerate(("measure", "batched log", "baseline", "ratio")))
    # Plain print: a console would wrap the table at its width.
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(row)), flush=True)
