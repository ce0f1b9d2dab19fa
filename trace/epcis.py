"""EPCIS 2.0 JSON-LD events: schema validation, a normalised model, event hashes and builders.

Validation uses the GS1 EPCIS 2.0 JSON Schema shipped in ``schemas/`` (never fetched). Formats
``uri`` and ``date-time`` are checked by our own checkers (RFC 3986 scheme syntax, RFC 3339), so
validation does not depend on which optional jsonschema format packages are installed.

Event identifiers (``eventID``) — our choice, read before relying on it
------------------------------------------------------------------------
:func:`canonical_event_hash` is **not** the GS1 CBV 2.0 "EPCIS Event Hash ID" pre-hash string
algorithm (that needs CBV/Digital Link normalisation of every EPC scheme and JSON-LD expansion of
extensions). It is::

    ni:///sha-256;<hex of SHA-256(JCS(normalised event))>?ver=evl-jcs-1

where JCS is RFC 8785 and the normalised event is the event without ``eventID``, ``recordTime``
(set by the capturing repository), ``errorDeclaration`` (added when the event is later declared
erroneous, so the declaration keeps the id) and ``@context`` (an event inside a document carries
none), with ``eventTime`` rewritten to UTC with milliseconds (``2024-05-01T00:30:00.000Z``) so that
equivalent time notations hash alike. The ``ver`` parameter says so; a value ``ver=CBV2.0`` would
falsely claim the GS1 algorithm. Builders set ``eventID`` to this hash, so an event's id is
reproducible from its content.

Extension namespace
-------------------
Fields EPCIS/CBV do not define are in our JSON-LD namespace ``evl:`` = ``urn:evidence-ledger:trace:``
(declared in each built event's ``@context``):

* ``evl:certificate`` (ObjectEvent, by :func:`inspect`): a list of objects with ``evl:certificateType``
  (``quarantine`` | ``meat_inspection`` | ...), ``evl:certificateNumber``, ``evl:issuer``,
  ``evl:issuedAt`` (RFC 3339), ``evl:result``; the certificate's URI is also in the standard
  ``certificationInfo`` field.
* ``evl:reason`` (disposal and recall events): free text.
* ILMD keys given without a prefix are put in ``evl:`` (``slaughterDate`` -> ``evl:slaughterDate``).

Normalised model (:class:`TraceEvent`)
--------------------------------------
* ObjectEvent / TransactionEvent: the objects (``epcList`` and ``quantityList``) are ``outputs``
  for ADD and OBSERVE, ``inputs`` for DELETE.
* TransformationEvent: ``inputEPCList``/``inputQuantityList`` -> ``inputs``, the output lists ->
  ``outputs``.
* AggregationEvent / AssociationEvent: ``parentID`` -> ``parent``; ``childEPCs`` and
  ``childQuantityList`` -> ``children``; inputs/outputs are empty.
* Each EPC becomes ``Quantity(epc=..., quantity=None)``; each quantity element
  ``Quantity(epc_class=..., quantity=..., uom=...)``; ``product`` is the parsed ProductId when the
  URI is an LGTIN/SGTIN/Digital Link/local URN with a lot or serial, else None (patterns, SSCCs).
* Builders put every (product, kg) in a quantity list under the lot-level class URI (quantity in
  kg, uom ``KGM``); a serialised product is additionally listed by its instance URI in the EPC
  list (with ``quantity=None``): sum only quantities that are not None.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from typing import Any, Iterable, Sequence
from urllib.parse import quote

import fastjsonschema
import jsonschema
import referencing
import referencing.exceptions
from referencing.jsonschema import DRAFT7

from ..ledger.canonical import canonicalize
from .errors import InvalidEventError, InvalidIdentifierError
from .identifiers import ProductId, gs1_check_digit, location_uri, party_uri

__all__ = [
    "EPCIS_CONTEXT_URL",
    "EVL_NAMESPACE",
    "EVENT_CONTEXT",
    "SCHEMA_ID",
    "HASH_VERSION",
    "EVENT_TYPES",
    "Quantity",
    "TraceEvent",
    "load_schema",
    "load_context",
    "validate_document",
    "validate_event",
    "events_of",
    "canonical_event_hash",
    "parse_event",
    "to_epcis",
    "epcis_document",
    "format_time",
    "commission_lot",
    "slaughter",
    "pack",
    "ship",
    "receive",
    "inspect",
    "dispose",
    "recall",
    "error_declaration",
    "unpack",
    "CERTIFICATE_TYPES",
]

EPCIS_CONTEXT_URL = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
EVL_NAMESPACE = "urn:evidence-ledger:trace:"
EVENT_CONTEXT: list[Any] = [EPCIS_CONTEXT_URL, {"evl": EVL_NAMESPACE}]
SCHEMA_ID = "https://gs1.github.io/EPCIS/EPCIS-JSON-Schema.json"
HASH_VERSION = "evl-jcs-1"
EVENT_TYPES = ("ObjectEvent", "AggregationEvent", "TransformationEvent", "TransactionEvent", "AssociationEvent")
KGM = "KGM"

_SCHEMA_FILE = "EPCIS-JSON-Schema.json"
_CONTEXT_FILE = "epcis-context.jsonld"
# Local copies that may be served by URL; nothing else is ever retrieved.
_LOCAL_URLS = {
    SCHEMA_ID: _SCHEMA_FILE,
    EPCIS_CONTEXT_URL: _CONTEXT_FILE,
    "https://ref.gs1.org/standards/epcis/epcis-context.jsonld": _CONTEXT_FILE,
}


# -- schema -----------------------------------------------------------------------------------

def _read_json(name: str) -> Any:
    return json.loads(resources.files(__package__).joinpath("schemas", name).read_text("utf-8"))


@functools.cache
def load_schema() -> dict:
    """The GS1 EPCIS 2.0 JSON Schema (draft-07), from the packaged copy (cached; do not mutate)."""
    return _read_json(_SCHEMA_FILE)


@functools.cache
def load_context() -> dict:
    """The EPCIS 2.0 JSON-LD context, from the packaged copy (cached; do not mutate)."""
    return _read_json(_CONTEXT_FILE)


def _retrieve(uri: str) -> referencing.Resource:
    """Serve only the packaged schema and context; refuse every other URI (no network)."""
    name = _LOCAL_URLS.get(uri.split("#", 1)[0])
    if name is None:
        raise referencing.exceptions.NoSuchResource(ref=uri)
    return DRAFT7.create_resource(_read_json(name))


_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s\"<>\\^`{|}]*$")
_DATE_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def _parse_time(value: str) -> datetime:
    """RFC 3339 date-time -> aware datetime (fraction truncated to microseconds)."""
    m = _DATE_TIME.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"not an RFC 3339 date-time with offset: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or ".0")[1:7].ljust(6, "0"))
    zone = m.group(8)
    if zone in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        hh, mm = int(zone[1:3]), int(zone[4:6])
        if hh > 23 or mm > 59:
            raise ValueError(f"bad UTC offset in {value!r}")
        tz = timezone(sign * timedelta(hours=hh, minutes=mm))
    if second == 60:  # leap second: RFC 3339 allows it, datetime does not
        second = 59
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("uri", raises=())
def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or bool(_URI.match(value))


@_FORMATS.checks("date-time", raises=(ValueError,))
def _is_date_time(value: object) -> bool:
    if isinstance(value, str):
        _parse_time(value)
    return True


@functools.cache
def _validators() -> tuple[jsonschema.protocols.Validator, jsonschema.protocols.Validator]:
    schema = load_schema()
    registry = referencing.Registry(retrieve=_retrieve).with_resource(SCHEMA_ID, DRAFT7.create_resource(schema))
    cls = jsonschema.Draft7Validator
    root = cls(schema, registry=registry, format_checker=_FORMATS)
    event = cls({"$ref": f"{SCHEMA_ID}#/definitions/EPCIS-Document-Event"}, registry=registry,
                format_checker=_FORMATS)
    return root, event


def _fast_format_date_time(value: object) -> bool:
    try:
        if isinstance(value, str):
            _parse_time(value)
    except ValueError:
        return False
    return True


def _fast_handler(uri: str) -> Any:
    name = _LOCAL_URLS.get(uri.split("#", 1)[0])
    if name is None:  # never fetch: the schema must resolve from the packaged copies
        raise InvalidEventError(f"schema reference {uri!r} is not available offline", path="$")
    return _read_json(name)


@functools.cache
def _fast_validators() -> tuple[Any, Any]:
    """The same schema compiled to Python (fastjsonschema): ~15x faster than jsonschema on
    valid events, which is every event of a bulk capture. Failures are re-checked by
    jsonschema for the precise path and message."""
    schema = copy.deepcopy(load_schema())  # compile() rewrites the dict it is given
    options = {"handlers": {"https": _fast_handler, "http": _fast_handler},
               "formats": {"uri": _URI.pattern, "date-time": _fast_format_date_time}}
    root = fastjsonschema.compile(schema, **options)
    event = fastjsonschema.compile({"$id": SCHEMA_ID, "definitions": copy.deepcopy(load_schema().get("definitions", {})),
                                    "$ref": "#/definitions/EPCIS-Document-Event"}, **options)
    return root, event


def _check(fast: Any, slow: jsonschema.protocols.Validator, instance: Any, prefix: str) -> None:
    try:
        fast(instance)
        return
    except fastjsonschema.JsonSchemaException as e:
        fast_error = e
    _raise_first(slow, instance, prefix)
    # jsonschema accepts what the compiled validator refused: report the compiled one's reason.
    raise InvalidEventError(str(fast_error), path=prefix)


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    if not error.context:
        return [error]
    return [leaf for sub in error.context for leaf in _leaves(sub)]


def _raise_first(validator: jsonschema.protocols.Validator, instance: Any, prefix: str) -> None:
    """Raise InvalidEventError for the most specific schema violation, if any.

    Direct violations (wrong enum value, missing property, bad format) win over ``anyOf``
    summaries; among them the deepest JSON path wins."""
    errors = list(validator.iter_errors(instance))
    if not errors:
        return
    direct = [e for e in errors if e.validator not in ("anyOf", "oneOf", "allOf", "if", "then")]
    error = max(direct or errors, key=lambda e: len(e.absolute_path))
    path = prefix + error.json_path[1:]
    if "propertyNames" in error.schema_path:
        name = error.instance
        raise InvalidEventError(
            f"property {name!r} is not allowed here: expected a standard EPCIS field of this event "
            f"type or an extension named by a URI or CURIE (e.g. 'example:myField')",
            path=f"{path}[{json.dumps(name, ensure_ascii=False)}]",
        )
    if error.validator == "required" and isinstance(error.instance, dict):
        got = "properties " + ", ".join(sorted(error.instance))
    else:
        got = json.dumps(error.instance, ensure_ascii=False, default=str)
    if len(got) > 160:
        got = got[:157] + "..."
    if error.validator in ("anyOf", "oneOf") and error.context:
        options = "; ".join(dict.fromkeys(leaf.message for leaf in _leaves(error)))
        if len(options) > 300:
            options = options[:297] + "..."
        message = f"matches none of the allowed forms ({options})"
    else:
        message = error.message
    raise InvalidEventError(f"{message}; got {got}", path=path)


def validate_document(doc: dict) -> None:
    """Validate an EPCISDocument, EPCISQueryDocument or a standalone event (with ``@context``)
    against the GS1 schema; raise :class:`InvalidEventError` naming the JSON path."""
    if not isinstance(doc, dict):
        raise InvalidEventError(f"expected a JSON object, got {type(doc).__name__}", path="$")
    _check(_fast_validators()[0], _validators()[0], doc, "$")


def validate_event(event: dict) -> None:
    """Validate one EPCIS event (as found in an ``eventList``; ``@context`` optional)."""
    if not isinstance(event, dict):
        raise InvalidEventError(f"expected an event object, got {type(event).__name__}", path="$")
    if "type" not in event:
        raise InvalidEventError("'type' is a required property (expected one of "
                                f"{', '.join(EVENT_TYPES)})", path="$.type")
    _check(_fast_validators()[1], _validators()[1], event, "$")


def events_of(doc: dict | list) -> list[dict]:
    """The events of an EPCISDocument, an EPCISQueryDocument, a single event or a list of events."""
    if isinstance(doc, list):
        return list(doc)
    if not isinstance(doc, dict):
        raise InvalidEventError(f"expected an EPCIS document or events, got {type(doc).__name__}", path="$")
    kind = doc.get("type")
    try:
        if kind == "EPCISDocument":
            return list(doc["epcisBody"]["eventList"])
        if kind == "EPCISQueryDocument":
            return list(doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"])
    except (KeyError, TypeError):
        where = "$.epcisBody.eventList" if kind == "EPCISDocument" else "$.epcisBody.queryResults.resultsBody.eventList"
        raise InvalidEventError(f"{kind} has no event list", path=where) from None
    if isinstance(kind, str):
        return [doc]
    raise InvalidEventError("expected 'type' EPCISDocument, EPCISQueryDocument or an event type", path="$.type")


# -- time and hashing ---------------------------------------------------------------------------

def format_time(moment: datetime) -> str:
    """RFC 3339 with milliseconds, keeping the datetime's own offset (``...T08:30:00.000+08:00``)."""
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidEventError(f"event time must be a timezone-aware datetime, got {moment!r}", path="$.eventTime")
    text = moment.isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _offset(moment: datetime) -> str:
    minutes = int(moment.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _utc_ms(value: str) -> str:
    moment = _parse_time(value).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def canonical_event_hash(event: dict) -> str:
    """``ni:///sha-256;<hex>?ver=evl-jcs-1`` — see the module docstring for exactly what is hashed."""
    if not isinstance(event, dict):
        raise InvalidEventError(f"expected an event object, got {type(event).__name__}", path="$")
    body = {k: v for k, v in event.items() if k not in ("eventID", "recordTime", "errorDeclaration", "@context")}
    if isinstance(body.get("eventTime"), str):
        try:
            body["eventTime"] = _utc_ms(body["eventTime"])
        except ValueError as exc:
            raise InvalidEventError(str(exc), path="$.eventTime") from None
    digest = hashlib.sha256(canonicalize(body)).hexdigest()
    return f"ni:///sha-256;{digest}?ver={HASH_VERSION}"


# -- the normalised model -------------------------------------------------------------------------

@dataclass(frozen=True)
class Quantity:
    """One object of an event: an instance (``epc``) or a class with a quantity (``epc_class``)."""

    epc_class: str | None
    epc: str | None
    product: ProductId | None
    quantity: float | None
    uom: str | None

    @property
    def kg(self) -> float | None:
        """The quantity in kilograms when the unit of measure is KGM (or TNE/GRM), else None."""
        if self.quantity is None:
            return None
        factor = {"KGM": 1.0, "TNE": 1000.0, "GRM": 0.001}.get(self.uom or "")
        return None if factor is None else float(self.quantity) * factor


@dataclass(frozen=True)
class TraceEvent:
    """An EPCIS 2.0 event reduced to what traceability needs (``raw`` keeps everything)."""

    event_id: str
    type: str
    action: str | None
    biz_step: str | None
    disposition: str | None
    event_time: datetime
    read_point: str | None
    biz_location: str | None
    inputs: tuple[Quantity, ...] = ()
    outputs: tuple[Quantity, ...] = ()
    parent: str | None = None
    children: tuple[Quantity, ...] = ()
    source: tuple[tuple[str, str], ...] = ()
    destination: tuple[tuple[str, str], ...] = ()
    certificates: tuple[dict, ...] = ()
    error_declaration: dict | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def objects(self) -> tuple[Quantity, ...]:
        """Every object the event mentions: inputs, outputs and children."""
        return self.inputs + self.outputs + self.children

    @property
    def products(self) -> tuple[ProductId, ...]:
        """Distinct products (in order of first mention) among :attr:`objects`."""
        seen: dict[str, ProductId] = {}
        for q in self.objects:
            if q.product is not None:
                seen.setdefault(q.product.key, q.product)
        return tuple(seen.values())

    def party(self, role: str = "owning_party", *, destination: bool = False) -> str | None:
        """The first source (or destination) of the given CBV type, e.g. ``owning_party``."""
        for kind, ident in self.destination if destination else self.source:
            if kind == role:
                return ident
        return None


_CBV_PREFIXES = (
    "https://ref.gs1.org/cbv/BizStep-", "https://ref.gs1.org/cbv/Disp-",
    "https://ref.gs1.org/cbv/SDT-", "https://ref.gs1.org/cbv/ER-",
    "urn:epcglobal:cbv:bizstep:", "urn:epcglobal:cbv:disp:", "urn:epcglobal:cbv:sdt:", "urn:epcglobal:cbv:er:",
    "cbv:BizStep-", "cbv:Disp-", "cbv:SDT-", "cbv:ER-",
)


def _short(value: str | None) -> str | None:
    """CBV value in its short form (``shipping``), whichever notation the event used."""
    if value is None:
        return None
    for prefix in _CBV_PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix):]
    return value


def _product(uri: str | None) -> ProductId | None:
    if not uri:
        return None
    try:
        return ProductId.from_epc(uri)
    except InvalidIdentifierError:
        return None


def _epcs(values: Iterable[str] | None) -> tuple[Quantity, ...]:
    return tuple(Quantity(None, v, _product(v), None, None) for v in values or ())


def _quantities(values: Iterable[dict] | None) -> tuple[Quantity, ...]:
    out = []
    for q in values or ():
        amount = q.get("quantity")
        out.append(Quantity(q["epcClass"], None, _product(q["epcClass"]), None if amount is None else float(amount),
                            q.get("uom")))
    return tuple(out)


def _certificates(event: dict) -> tuple[dict, ...]:
    certs: list[dict] = []
    info = event.get("certificationInfo")
    uris = [info] if isinstance(info, str) else list(info or [])
    ours = event.get("evl:certificate") or []
    if isinstance(ours, dict):
        ours = [ours]
    for i, c in enumerate(ours):
        if not isinstance(c, dict):
            continue
        uri = c.get("evl:certificateURI") or (uris[i] if i < len(uris) else None)
        certs.append({
            "type": c.get("evl:certificateType"),
            "number": c.get("evl:certificateNumber"),
            "issuer": c.get("evl:issuer"),
            "issued_at": c.get("evl:issuedAt"),
            "result": c.get("evl:result"),
            "uri": uri,
        })
    covered = {c["uri"] for c in certs}
    certs.extend({"uri": u} for u in uris if u not in covered)
    return tuple(certs)


def parse_event(event: dict) -> TraceEvent:
    """Validate ``event`` against the schema and normalise it (see the module docstring).

    An event without ``eventID`` gets :func:`canonical_event_hash` as its id (also in ``raw``)."""
    validate_event(event)
    raw = copy.deepcopy(event)
    kind = raw["type"]
    if kind not in EVENT_TYPES:
        raise InvalidEventError(f"expected one of {', '.join(EVENT_TYPES)}, got {kind!r}", path="$.type")
    if not raw.get("eventID"):
        raw["eventID"] = canonical_event_hash(raw)
    action = raw.get("action")
    inputs: tuple[Quantity, ...] = ()
    outputs: tuple[Quantity, ...] = ()
    children: tuple[Quantity, ...] = ()
    if kind in ("ObjectEvent", "TransactionEvent"):
        objects = _epcs(raw.get("epcList")) + _quantities(raw.get("quantityList"))
        if action == "DELETE":
            inputs = objects
        else:
            outputs = objects
    elif kind == "TransformationEvent":
        inputs = _epcs(raw.get("inputEPCList")) + _quantities(raw.get("inputQuantityList"))
        outputs = _epcs(raw.get("outputEPCList")) + _quantities(raw.get("outputQuantityList"))
    else:
        children = _epcs(raw.get("childEPCs")) + _quantities(raw.get("childQuantityList"))
    return TraceEvent(
        event_id=raw["eventID"],
        type=kind,
        action=action,
        biz_step=_short(raw.get("bizStep")),
        disposition=_short(raw.get("disposition")),
        event_time=_parse_time(raw["eventTime"]),
        read_point=(raw.get("readPoint") or {}).get("id"),
        biz_location=(raw.get("bizLocation") or {}).get("id"),
        inputs=inputs,
        outputs=outputs,
        parent=raw.get("parentID"),
        children=children,
        source=tuple((_short(s["type"]) or "", s["source"]) for s in raw.get("sourceList") or ()),
        destination=tuple((_short(d["type"]) or "", d["destination"]) for d in raw.get("destinationList") or ()),
        certificates=_certificates(raw),
        error_declaration=copy.deepcopy(raw.get("errorDeclaration")),
        raw=raw,
    )


def to_epcis(event: TraceEvent) -> dict:
    """The EPCIS 2.0 JSON of a parsed event: a copy of ``raw`` with ``eventID`` set."""
    doc = copy.deepcopy(event.raw)
    doc["eventID"] = event.event_id
    return doc


def epcis_document(events: Sequence[dict], creation_date: datetime, *, document_id: str | None = None) -> dict:
    """Wrap events in an EPCISDocument (their ``@context`` entries are moved to the document)."""
    body = []
    for e in events:
        e = dict(e)
        e.pop("@context", None)
        body.append(e)
    doc: dict[str, Any] = {"@context": copy.deepcopy(EVENT_CONTEXT), "type": "EPCISDocument",
                           "schemaVersion": "2.0", "creationDate": format_time(creation_date),
                           "epcisBody": {"eventList": body}}
    if document_id:
        doc["id"] = document_id
    return doc


# -- builders ---------------------------------------------------------------------------------

Item = tuple[ProductId, float]


def _kg(amount: float, where: str) -> float | int:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount != amount or amount <= 0 \
            or amount == float("inf"):
        raise InvalidEventError(f"expected a positive finite quantity in kg, got {amount!r}", path=where)
    return int(amount) if float(amount).is_integer() else float(amount)


def _items(items: Sequence[Item], where: str) -> tuple[list[dict], list[str]]:
    if not items:
        raise InvalidEventError("expected at least one (product, kg) item, got none", path=where)
    quantities: list[dict] = []
    epcs: list[str] = []
    for i, item in enumerate(items):
        try:
            pid, kg = item
        except (TypeError, ValueError):
            raise InvalidEventError(f"expected a (ProductId, kg) pair, got {item!r}", path=f"{where}[{i}]") from None
        if not isinstance(pid, ProductId):
            raise InvalidEventError(f"expected a ProductId, got {type(pid).__name__}", path=f"{where}[{i}]")
        quantities.append({"epcClass": pid.class_uri(), "quantity": _kg(kg, f"{where}[{i}]"), "uom": KGM})
        if pid.serial is not None:
            uri = pid.instance_uri()
            if uri not in epcs:
                epcs.append(uri)
    return quantities, epcs


def _base(kind: str, time: datetime, **fields: Any) -> dict:
    event: dict[str, Any] = {"@context": copy.deepcopy(EVENT_CONTEXT), "type": kind,
                             "eventTime": format_time(time), "eventTimeZoneOffset": _offset(time)}
    event.update({k: v for k, v in fields.items() if v is not None})
    return event


def _finish(event: dict) -> dict:
    event["eventID"] = canonical_event_hash(event)
    return event


def _where(location: str | None) -> dict | None:
    return None if location is None else {"id": location_uri(location)}


def _ext_keys(data: dict | None, where: str) -> dict | None:
    if not data:
        return None
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not key:
            raise InvalidEventError(f"expected string keys, got {key!r}", path=where)
        name = key if ":" in key else f"evl:{key}"
        out[name] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def commission_lot(pid: ProductId, quantity_kg: float, location_gln_or_id: str, time: datetime,
                   ilmd: dict | None = None) -> dict:
    """ObjectEvent ADD, bizStep ``commissioning``, disposition ``active``: a new lot of
    ``quantity_kg`` comes into existence at the location; ``ilmd`` holds lot master data
    (keys without prefix go to ``evl:``, e.g. ``{"slaughterDate": "2024-05-01"}``)."""
    quantities, epcs = _items([(pid, quantity_kg)], "$.quantityList")
    where = _where(location_gln_or_id)
    return _finish(_base(
        "ObjectEvent", time, epcList=epcs or None, action="ADD", quantityList=quantities, bizStep="commissioning",
        disposition="active", readPoint=where, bizLocation=where, ilmd=_ext_keys(ilmd, "$.ilmd"),
    ))


def slaughter(carcass_inputs: Sequence[Item], cut_outputs: Sequence[Item], location: str, time: datetime,
              *, ilmd: dict | None = None) -> dict:
    """TransformationEvent (bizStep ``commissioning`` of the outputs, CBV 2.0 has no slaughtering
    step): carcasses/animals in, cuts out, in kg. Mass balance is for the service to judge."""
    ins, in_epcs = _items(carcass_inputs, "$.inputQuantityList")
    outs, out_epcs = _items(cut_outputs, "$.outputQuantityList")
    where = _where(location)
    return _finish(_base(
        "TransformationEvent", time, inputEPCList=in_epcs or None, inputQuantityList=ins,
        outputEPCList=out_epcs or None, outputQuantityList=outs, bizStep="commissioning",
        disposition="active", readPoint=where, bizLocation=where, ilmd=_ext_keys(ilmd, "$.ilmd"),
    ))


def _container_uri(parent: str) -> str:
    """A parent container: an 18-digit SSCC (check digit verified) -> ``https://id.gs1.org/00/...``;
    any absolute URI is kept."""
    text = parent.strip() if isinstance(parent, str) else parent
    if isinstance(text, str) and text.isdigit():
        if len(text) != 18:
            raise InvalidIdentifierError(f"SSCC must be 18 digits, got {parent!r} ({len(text)} digits)")
        expected = gs1_check_digit(text[:-1])
        if int(text[-1]) != expected:
            raise InvalidIdentifierError(f"SSCC {text} has check digit {text[-1]}, expected {expected}")
        return f"https://id.gs1.org/00/{text}"
    if isinstance(text, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$", text):
        return text
    raise InvalidIdentifierError(f"parent must be an 18-digit SSCC or an absolute URI, got {parent!r}")


def pack(parent_sscc_or_id: str, children: Sequence[Item], location: str, time: datetime) -> dict:
    """AggregationEvent ADD, bizStep ``packing``: children (kg) packed into a case/pallet."""
    quantities, epcs = _items(children, "$.childQuantityList")
    where = _where(location)
    return _finish(_base(
        "AggregationEvent", time, parentID=_container_uri(parent_sscc_or_id), childEPCs=epcs or None,
        action="ADD", childQuantityList=quantities, bizStep="packing", disposition="in_progress",
        readPoint=where, bizLocation=where,
    ))


def unpack(parent_sscc_or_id: str, children: Sequence[Item], location: str, time: datetime) -> dict:
    """AggregationEvent DELETE, bizStep ``unpacking``."""
    quantities, epcs = _items(children, "$.childQuantityList")
    where = _where(location)
    return _finish(_base(
        "AggregationEvent", time, parentID=_container_uri(parent_sscc_or_id), childEPCs=epcs or None,
        action="DELETE", childQuantityList=quantities, bizStep="unpacking", disposition="in_progress",
        readPoint=where, bizLocation=where,
    ))


def _movement(step: str, disposition: str, items: Sequence[Item], source_party: str, destination_party: str,
              location: str, time: datetime, source_location: str | None, destination_location: str | None,
              biz_transactions: Sequence[tuple[str, str]] | None) -> dict:
    quantities, epcs = _items(items, "$.quantityList")
    sources = [{"type": "owning_party", "source": party_uri(source_party)}]
    destinations = [{"type": "owning_party", "destination": party_uri(destination_party)}]
    if source_location:
        sources.append({"type": "location", "source": location_uri(source_location)})
    if destination_location:
        destinations.append({"type": "location", "destination": location_uri(destination_location)})
    where = _where(location)
    transactions = None
    if biz_transactions:
        transactions = [{"type": t, "bizTransaction": ref} if t else {"bizTransaction": ref}
                        for t, ref in biz_transactions]
    return _finish(_base(
        "ObjectEvent", time, epcList=epcs or None, action="OBSERVE", quantityList=quantities, bizStep=step,
        disposition=disposition, readPoint=where, bizLocation=where if step == "receiving" else None,
        bizTransactionList=transactions, sourceList=sources, destinationList=destinations,
    ))


def ship(items: Sequence[Item], source_party: str, destination_party: str, from_location: str, time: datetime,
         *, to_location: str | None = None, biz_transactions: Sequence[tuple[str, str]] | None = None) -> dict:
    """ObjectEvent OBSERVE, bizStep ``shipping``, disposition ``in_transit``, from ``from_location``.

    ``sourceList`` = the shipping ``owning_party`` (and ``location`` = ``from_location``);
    ``destinationList`` = the receiving ``owning_party`` (and ``location`` = ``to_location`` if
    known). Parties and locations: 13-digit GLNs (made ``https://id.gs1.org/417/`` resp. ``/414/``
    Digital Links) or absolute URIs. ``biz_transactions``: (type, URI) pairs, e.g. ("inv", ...)."""
    return _movement("shipping", "in_transit", items, source_party, destination_party, from_location, time,
                     from_location, to_location, biz_transactions)


def receive(items: Sequence[Item], source_party: str, destination_party: str, at_location: str, time: datetime,
            *, from_location: str | None = None,
            biz_transactions: Sequence[tuple[str, str]] | None = None) -> dict:
    """ObjectEvent OBSERVE, bizStep ``receiving``, disposition ``in_progress``, at ``at_location``
    (also the business location); source/destination as in :func:`ship`."""
    return _movement("receiving", "in_progress", items, source_party, destination_party, at_location, time,
                     from_location, at_location, biz_transactions)


CERTIFICATE_TYPES = ("quarantine", "meat_inspection")


def inspect(pid: ProductId, certificate: dict, location: str, time: datetime) -> dict:
    """ObjectEvent OBSERVE, bizStep ``inspecting``, recording a certificate for the lot.

    ``certificate``: ``type`` (``quarantine`` | ``meat_inspection`` | another short name),
    ``number``, ``issuer``, ``issued_at`` (datetime or RFC 3339 string), ``result`` (e.g.
    ``pass`` / ``fail``) and optionally ``uri``. The certificate URI (given, else
    ``urn:evidence-ledger:certificate:<type>:<issuer>:<number>``) goes in the standard
    ``certificationInfo``; the details in ``evl:certificate``. Disposition ``conformant`` for a
    passing result, ``non_conformant`` for ``fail``/``failed``/``rejected``, else none."""
    if not isinstance(certificate, dict):
        raise InvalidEventError(f"expected a certificate object, got {type(certificate).__name__}", path="$.evl:certificate")
    for key in ("type", "number", "issuer", "issued_at", "result"):
        if certificate.get(key) in (None, ""):
            raise InvalidEventError(f"certificate needs {key!r} (type, number, issuer, issued_at, result)",
                                    path=f"$.evl:certificate.{key}")
    ctype = str(certificate["type"])
    if not re.match(r"^[a-z][a-z0-9_]*$", ctype):
        raise InvalidEventError(f"certificate type must be a short snake_case name such as {CERTIFICATE_TYPES}, "
                                f"got {ctype!r}", path="$.evl:certificate.type")
    issued = certificate["issued_at"]
    issued_text = format_time(issued) if isinstance(issued, datetime) else str(issued)
    try:
        _parse_time(issued_text)
    except ValueError:
        if not re.match(r"^\d{4}-\d{2}-\d{2}$", issued_text):
            raise InvalidEventError(f"issued_at must be an RFC 3339 date-time or a date, got {issued!r}",
                                    path="$.evl:certificate.issued_at") from None
    uri = certificate.get("uri") or (
        f"urn:evidence-ledger:certificate:{ctype}:{quote(str(certificate['issuer']), safe='')}:"
        f"{quote(str(certificate['number']), safe='')}")
    result = str(certificate["result"])
    disposition = None
    if result.lower() in ("pass", "passed", "qualified", "ok", "conformant"):
        disposition = "conformant"
    elif result.lower() in ("fail", "failed", "rejected", "unqualified", "non_conformant"):
        disposition = "non_conformant"
    quantities = [{"epcClass": pid.class_uri()}]
    epcs = [pid.instance_uri()] if pid.serial is not None else []
    details = {"evl:certificateType": ctype, "evl:certificateNumber": str(certificate["number"]),
               "evl:issuer": str(certificate["issuer"]), "evl:issuedAt": issued_text, "evl:result": result,
               "evl:certificateURI": uri}
    where = _where(location)
    event = _base("ObjectEvent", time, certificationInfo=[uri], epcList=epcs or None, action="OBSERVE",
                  quantityList=quantities, bizStep="inspecting", disposition=disposition, readPoint=where,
                  bizLocation=where)
    event["evl:certificate"] = [details]
    return _finish(event)


def dispose(items: Sequence[Item], reason: str, location: str, time: datetime, *,
            disposition: str = "destroyed") -> dict:
    """ObjectEvent DELETE, bizStep ``destroying`` (CBV 2.0 has no ``disposing`` step),
    disposition ``destroyed`` (or ``disposed``), ``evl:reason``: the lot leaves the supply chain."""
    if disposition not in ("destroyed", "disposed"):
        raise InvalidEventError(f"disposition must be 'destroyed' or 'disposed', got {disposition!r}",
                                path="$.disposition")
    if not reason:
        raise InvalidEventError("a disposal needs a reason", path="$.evl:reason")
    quantities, epcs = _items(items, "$.quantityList")
    where = _where(location)
    event = _base("ObjectEvent", time, epcList=epcs or None, action="DELETE", quantityList=quantities,
                  bizStep="destroying", disposition=disposition, readPoint=where, bizLocation=where)
    event["evl:reason"] = reason
    return _finish(event)


def recall(pid: ProductId, reason: str, time: datetime, *, location: str | None = None) -> dict:
    """ObjectEvent OBSERVE, bizStep ``holding``, disposition ``recalled``, ``evl:reason``."""
    if not reason:
        raise InvalidEventError("a recall needs a reason", path="$.evl:reason")
    quantities = [{"epcClass": pid.class_uri()}]
    epcs = [pid.instance_uri()] if pid.serial is not None else []
    where = _where(location)
    event = _base("ObjectEvent", time, epcList=epcs or None, action="OBSERVE", quantityList=quantities,
                  bizStep="holding", disposition="recalled", readPoint=where)
    event["evl:reason"] = reason
    return _finish(event)


def error_declaration(original_event_id: str, reason: str, corrective_event_ids: Sequence[str], time: datetime,
                      *, original: dict | None = None) -> dict:
    """An EPCIS 2.0 error declaration: the erroneous event repeated (same ``eventID``, same
    content) with an ``errorDeclaration`` (``declarationTime``, ``reason`` = ``did_not_occur`` |
    ``incorrect_data`` | a URI, ``correctiveEventIDs``).

    Pass the erroneous event as ``original`` to repeat it faithfully (EPCIS 2.0 §7.4.1.2). Without
    it the result is a minimal ObjectEvent OBSERVE carrying the original's ``eventID``, the
    declaration time as ``eventTime`` and no objects — schema-valid, but only a pointer."""
    if reason in ("did_not_occur", "incorrect_data") or re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$", reason or ""):
        declared_reason = reason
    else:
        raise InvalidEventError("reason must be 'did_not_occur', 'incorrect_data' or a URI, "
                                f"got {reason!r}", path="$.errorDeclaration.reason")
    declaration = {"declarationTime": format_time(time), "reason": declared_reason,
                   "correctiveEventIDs": list(corrective_event_ids)}
    if not declaration["correctiveEventIDs"]:
        del declaration["correctiveEventIDs"]
    if original is not None:
        if original.get("eventID") not in (None, original_event_id):
            raise InvalidEventError(f"original eventID {original.get('eventID')!r} differs from "
                                    f"{original_event_id!r}", path="$.eventID")
        event = copy.deepcopy(original)
        event.setdefault("@context", copy.deepcopy(EVENT_CONTEXT))
    else:
        event = _base("ObjectEvent", time, epcList=[], action="OBSERVE")
    event["eventID"] = original_event_id
    event["errorDeclaration"] = declaration
    return event
