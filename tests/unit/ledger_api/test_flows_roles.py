"""The flows role matrix: every flows route against every role, each cell asserted.

Rows are routes (a route appears twice when its answer depends on the data: police may read an
enterprise referred to it, not another). Columns are the roles: the agencies, admin, an enterprise
reading its own data (``enterprise-own``, the token of the row's target enterprise) and another
enterprise's (``enterprise-other``), the roles with no flows remit, and no token at all. A guard
test checks that every route registered under /api/v1/flows (and the flows pages) has a row, so
a new route cannot skip the matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import pytest
from fastapi.routing import APIRoute

from evidence_ledger.flows.identifiers import make_uscc
from evidence_ledger.flows.synthetic import generate_economy
from evidence_ledger.ledger_api.routers import flows as flows_routes

from .test_flows_api import economy_records, make_client, module_db_url, period_of

ROLES = ("admin", "tax", "hr", "police", "market", "enterprise-own", "enterprise-other",
         "officer", "operator", "court", "anonymous")
EVERYONE = frozenset(ROLES)
INSPECTORS = ["Li Wei", "Zhang Min", "Wang Fang"]


@dataclass
class World:
    client: Any
    tokens: dict[str, str]
    a: str  # the target: flagged, its findings referred to police
    n: str  # a clean enterprise, never referred
    b: str  # the "other" enterprise
    c: str  # a counterparty for new records
    period: str
    finding_a: str
    invoice_a: str
    draw_id: str
    referable: dict[str, str]  # role -> a finding (of another enterprise) it may refer
    fb: Any
    serial: Iterator[int] = field(default_factory=lambda: count(1))

    def headers(self, role: str, target: str) -> dict[str, str]:
        if role == "anonymous":
            return {}
        key = {"enterprise-own": target, "enterprise-other": self.b}.get(role, role)
        return {"Authorization": f"Bearer {self.tokens[key]}"}


Make = Callable[[World, str], tuple[str, Any]]


@dataclass(frozen=True)
class Row:
    method: str
    route: str  # the route's template, as registered
    allowed: frozenset[str]
    make: Make  # (world, role) -> (path, JSON body or None)
    target: str = "a"  # whose token "enterprise-own" is
    label: str = ""
    page: bool = False  # an HTML page: signed-out users are sent to the sign-in page


def _fixed(path: str) -> Make:
    return lambda w, role: (path.format(w=w), None)


def _new_enterprise(w: World, role: str) -> tuple[str, Any]:
    return "/api/v1/flows/enterprises", {"uscc": make_uscc(f"91440300MA{next(w.serial):07d}"),
                                         "name": f"Matrix {role}", "registeredOn": "2021-05-01"}


def _headcount(w: World, role: str) -> tuple[str, Any]:
    return f"/api/v1/flows/enterprises/{w.a}/headcount", {"period": f"2027-{ROLES.index(role) + 1:02d}",
                                                          "employees": 10, "insured": 9}


def _contract(w: World, role: str) -> tuple[str, Any]:
    return "/api/v1/flows/contracts", {"contractNo": f"MX-{next(w.serial)}", "buyerUscc": w.c, "sellerUscc": w.a,
                                       "amountFen": 1_000_000, "signedOn": "2026-07-02", "subject": "steel"}


def _payment(w: World, role: str) -> tuple[str, Any]:
    return "/api/v1/flows/payments", {"paymentRef": f"MX-PAY-{next(w.serial)}", "payerUscc": w.a,
                                      "payeeUscc": w.c, "amountFen": 500_000, "paidOn": "2026-07-03"}


def _invoice_body(w: World) -> dict[str, Any]:
    return {"sellerUscc": w.a, "buyerUscc": w.c, "code": "4400269999", "number": f"{70_000_000 + next(w.serial)}",
            "amountFen": 100_000, "taxFen": 13_000, "issuedOn": "2026-07-04", "goods": "steel"}


def _draw_to_reveal(w: World, role: str) -> tuple[str, Any]:
    d = w.fb.commit_draw(w.period, INSPECTORS, per_enterprise=1)
    return f"/api/v1/flows/draws/{d.id}/reveal", None


AGENCY_READ = frozenset({"admin", "tax", "market", "enterprise-own"})
MATRIX: list[Row] = [
    Row("POST", "/enterprises", frozenset({"admin", "market"}), _new_enterprise),
    Row("GET", "/enterprises", frozenset({"admin", "tax", "hr", "market"}), _fixed("/api/v1/flows/enterprises")),
    Row("POST", "/enterprises/{uscc}/tokens", frozenset({"admin", "market"}),
        _fixed("/api/v1/flows/enterprises/{w.a}/tokens")),
    Row("GET", "/enterprises/{uscc}", frozenset({"admin", "tax", "hr", "market", "police", "enterprise-own"}),
        _fixed("/api/v1/flows/enterprises/{w.a}"), label=" [referred]"),
    Row("GET", "/enterprises/{uscc}", frozenset({"admin", "tax", "hr", "market", "enterprise-own"}),
        _fixed("/api/v1/flows/enterprises/{w.n}"), target="n", label=" [not referred]"),
    Row("POST", "/enterprises/{uscc}/headcount", frozenset({"admin", "hr"}), _headcount),
    Row("GET", "/enterprises/{uscc}/headcount", frozenset({"admin", "hr", "market", "enterprise-own"}),
        _fixed("/api/v1/flows/enterprises/{w.a}/headcount")),
    Row("POST", "/contracts", frozenset({"admin", "tax", "enterprise-own"}), _contract),
    Row("POST", "/payments", frozenset({"admin", "tax", "enterprise-own"}), _payment),
    Row("POST", "/invoices", frozenset({"admin", "tax", "enterprise-own"}),
        lambda w, role: ("/api/v1/flows/invoices", _invoice_body(w))),
    Row("POST", "/bulk", frozenset({"admin", "tax"}),
        lambda w, role: ("/api/v1/flows/bulk", {"records": [{"kind": "invoice", **_invoice_body(w)}]})),
    Row("GET", "/invoices", AGENCY_READ, _fixed("/api/v1/flows/invoices?uscc={w.a}")),
    Row("GET", "/invoices/{key_hex}", AGENCY_READ, _fixed("/api/v1/flows/invoices/{w.invoice_a}")),
    Row("GET", "/contracts", AGENCY_READ, _fixed("/api/v1/flows/contracts?uscc={w.a}")),
    Row("GET", "/payments", AGENCY_READ, _fixed("/api/v1/flows/payments?uscc={w.a}")),
    Row("POST", "/analyses", frozenset({"admin", "tax", "market"}),
        lambda w, role: ("/api/v1/flows/analyses", {"period": "2025-01"})),
    Row("GET", "/findings", AGENCY_READ | {"police"}, _fixed("/api/v1/flows/findings?uscc={w.a}")),
    Row("GET", "/findings/{finding_id}", AGENCY_READ | {"police"}, _fixed("/api/v1/flows/findings/{w.finding_a}")),
    Row("POST", "/referrals", frozenset({"tax", "market"}),
        lambda w, role: ("/api/v1/flows/referrals", {"findingIds": [w.referable.get(role, w.finding_a)],
                                                     "note": "matrix referral"})),
    Row("GET", "/referrals", frozenset({"admin", "tax", "market", "police"}), _fixed("/api/v1/flows/referrals")),
    Row("GET", "/grades", AGENCY_READ, _fixed("/api/v1/flows/grades?period={w.period}&uscc={w.a}")),
    Row("GET", "/grades/{uscc}/{period}", AGENCY_READ, _fixed("/api/v1/flows/grades/{w.a}/{w.period}")),
    Row("POST", "/draws", frozenset({"admin", "market"}),
        lambda w, role: ("/api/v1/flows/draws", {"period": w.period, "inspectors": INSPECTORS, "perEnterprise": 1})),
    Row("POST", "/draws/{draw_id}/reveal", frozenset({"admin", "market"}), _draw_to_reveal),
    Row("GET", "/draws", EVERYONE, _fixed("/api/v1/flows/draws")),
    Row("GET", "/draws/{draw_id}", EVERYONE, _fixed("/api/v1/flows/draws/{w.draw_id}")),
    Row("GET", "/draws/{draw_id}/verify", EVERYONE, _fixed("/api/v1/flows/draws/{w.draw_id}/verify")),
    Row("GET", "/accesses", frozenset({"admin", "market"}), _fixed("/api/v1/flows/accesses")),
    Row("GET", "/flows/draws", EVERYONE, _fixed("/flows/draws"), page=True),
    Row("GET", "/flows/draws/{draw_id}", EVERYONE, _fixed("/flows/draws/{w.draw_id}"), page=True),
    Row("GET", "/flows/enterprises/{uscc}", frozenset({"admin", "tax", "hr", "market", "police", "enterprise-own"}),
        _fixed("/flows/enterprises/{w.a}"), page=True),
]
CELLS = [(row, role) for row in MATRIX for role in ROLES]


def _cell_id(cell: tuple[Row, str]) -> str:
    row, role = cell
    return f"{row.method} {row.route}{row.label} x {role}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"flows-roles-{request.param}")
    url = module_db_url(request, tmp)
    eco = generate_economy(enterprises=60, invoices=800, seed=5)
    with make_client(url, tmp / "var") as client:
        rt = client.app.state.runtime
        fb = rt.flows
        report = fb.ingest(economy_records(eco))
        assert not report.rejected, report.rejected[:3]
        period = period_of(eco)
        fb.analyse(period)
        findings = fb.findings(period=period, limit=10_000)
        by_uscc: dict[str, list[str]] = {}
        for f in findings:
            by_uscc.setdefault(f.uscc, []).append(f.id)
        flagged = sorted(by_uscc)
        assert len(flagged) >= 3, flagged
        a, x1, x2 = flagged[:3]
        fb.refer(by_uscc[a], referred_by="tax:matrix", note="referred for the matrix")
        clean = sorted(eco.clean - set(flagged))
        n, b, c = clean[:3]
        tokens = {role: rt.tokens.create(f"matrix-{role}", {role})[0]
                  for role in ("admin", "tax", "hr", "police", "market", "officer", "operator", "court")}
        for u in (a, n, b):
            tokens[u] = rt.tokens.create(f"enterprise {u}", {"enterprise"}, subject=f"enterprise:{u}")[0]
        d = fb.commit_draw(period, INSPECTORS, per_enterprise=1)
        rt.anchorer.flush("flows", timeout_s=20)  # the reveal mixes in the commitment's anchoring block
        fb.reveal_draw(d.id)
        invoice_a = next(i.key_hex for i in eco.invoices if i.seller_uscc == a)
        yield World(client=client, tokens=tokens, a=a, n=n, b=b, c=c, period=period, finding_a=by_uscc[a][0],
                    invoice_a=invoice_a, draw_id=d.id, referable={"tax": by_uscc[x1][0], "market": by_uscc[x2][0]},
                    fb=fb)


@pytest.mark.parametrize("cell", CELLS, ids=[_cell_id(c) for c in CELLS])
def test_role_matrix(world: World, cell: tuple[Row, str]) -> None:
    row, role = cell
    path, body = row.make(world, role)
    headers = world.headers(role, getattr(world, row.target))
    if row.method == "GET":
        r = world.client.get(path, headers=headers, follow_redirects=False)
    else:
        r = world.client.post(path, json=body, headers=headers, follow_redirects=False)
    if role in row.allowed:
        assert 200 <= r.status_code < 300, (role, path, r.status_code, r.text[:500])
    elif role == "anonymous":
        if row.page:
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), (path, r.status_code)
        else:
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", (path, r.text)
    else:
        assert r.status_code == 403, (role, path, r.status_code, r.text[:500])
        if not row.page:
            assert r.json()["error"]["code"] == "forbidden", r.text


def test_every_flows_route_is_in_the_matrix(world: World) -> None:
    """Routes as the app publishes them (its OpenAPI paths under /api/v1/flows) and as the flows
    routers declare them (pages and anything hidden from the schema included)."""
    registered = {(m.upper(), path.removeprefix("/api/v1/flows"))
                  for path, ops in world.client.app.openapi()["paths"].items() if path.startswith("/api/v1/flows/")
                  for m in ops if m in ("get", "post", "put", "patch", "delete")}
    for r in flows_routes.router.routes:
        assert isinstance(r, APIRoute)
        registered |= {(m, r.path) for m in r.methods - {"HEAD", "OPTIONS"}}
    for r in flows_routes.pages_router.routes:
        assert isinstance(r, APIRoute)
        registered |= {(m, r.path) for m in r.methods - {"HEAD", "OPTIONS"}}
    in_matrix = {(row.method, row.route) for row in MATRIX}
    assert len(registered) >= 29
    assert registered - in_matrix == set(), f"routes without a row in the matrix: {sorted(registered - in_matrix)}"
    assert in_matrix - registered == set(), f"rows for routes that do not exist: {sorted(in_matrix - registered)}"
    for row in MATRIX:
        assert row.allowed <= EVERYONE, row
