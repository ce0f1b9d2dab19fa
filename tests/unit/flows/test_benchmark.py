"""The flows benchmark at a small size: it runs, and its baselines give the same answers as ours."""

from __future__ import annotations

import json
from pathlib import Path

from evidence_ledger.flows.benchmark import naive_cycles, naive_link, run_flows_benchmark
from evidence_ledger.flows.reconcile import link
from evidence_ledger.flows.screening import ScreeningPolicy, find_cycles
from evidence_ledger.flows.synthetic import generate_economy


def test_small_run_writes_consistent_results(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    r = run_flows_benchmark(invoices=1_500, out_dir=tmp_path, baseline_sizes=(200, 400), naive_ingest=100)
    saved = json.loads((tmp_path / "flows.json").read_text())
    assert saved["data"]["invoices"] == 1_500
    assert r["ingest"]["records"] == saved["data"]["records"] == r["ingest"]["log_size"]
    assert r["analysis"]["clean_flagged"] == 0
    assert r["analysis"]["planted_missed"] == {}
    assert r["analysis"]["service_findings"] == r["analysis"]["findings"]
    for name in ("reconcile", "cycles", "grading"):
        for s in r["baselines"][name]["samples"]:
            assert s["agree"] is True or s["agree"] == s["of"], (name, s)
    assert "cycle detection" in capsys.readouterr().out


def test_naive_baselines_agree_with_ours() -> None:
    e = generate_economy(enterprises=120, invoices=900, seed=7)
    ours = link(e.invoices, e.contracts, e.payments, as_of=e.end)
    contract_of, payments_of = naive_link(e.invoices, e.contracts, e.payments, as_of=e.end)
    assert contract_of == {k: c.contract_no for k, c in ours.contract.items()}
    assert payments_of == {k: frozenset(p.payment_ref for p in ps) for k, ps in ours.payments.items()}
    policy = ScreeningPolicy(max_cycle_length=3)
    cycles = naive_cycles(e.invoices, policy.cycle_window_days, policy.min_cycle_invoice_fen)
    assert cycles == {frozenset(c.members) for c in find_cycles(e.invoices, policy)}
    assert cycles  # the planted three-company cycle
