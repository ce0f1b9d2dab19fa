"""GS1 Digital Link: paths, parsing, and the resolver's linkset answer (RFC 9264).

A GS1 Digital Link resolver answers ``GET {base}/01/{gtin}/10/{lot}`` either with a redirect to the
default link or, when asked for ``linkType=all`` / ``Accept: application/linkset+json``, with a
linkset (RFC 9264) listing every link of the item. :func:`linkset` builds that JSON.
"""

from __future__ import annotations

from .errors import InvalidIdentifierError
from .identifiers import ProductId, parse_digital_link_uri

__all__ = [
    "GS1_VOC",
    "LINKSET_MEDIA_TYPE",
    "KNOWN_LINK_TYPES",
    "parse_digital_link",
    "digital_link_path",
    "digital_link",
    "linkset",
]

GS1_VOC = "https://gs1.org/voc/"
LINKSET_MEDIA_TYPE = "application/linkset+json"

KNOWN_LINK_TYPES = {
    "gs1:pip": "Product information page",
    "gs1:recallStatus": "Recall status",
    "gs1:traceability": "Traceability information",
    "gs1:certificationInfo": "Certification information",
    "gs1:epcis": "EPCIS repository",
    "gs1:sustainabilityInfo": "Sustainability information",
    "gs1:safetyInfo": "Safety information",
    "gs1:allergenInfo": "Allergen information",
    "gs1:ingredientsInfo": "Ingredients information",
    "gs1:nutritionalInfo": "Nutritional information",
    "gs1:productSustainabilityInfo": "Product sustainability information",
    "gs1:verificationService": "Verification service",
    "gs1:masterData": "Master data",
    "gs1:quickStartGuide": "Quick start guide",
    "gs1:support": "Support",
    "gs1:homepage": "Homepage",
}


def parse_digital_link(uri_or_path: str) -> ProductId:
    """Parse a Digital Link URI (any domain) or a bare path ``/01/{gtin}/10/{lot}[/21/{serial}]``.

    Raises :class:`InvalidIdentifierError` for unknown/out-of-order AIs, bad GTIN check digits,
    invalid lots/serials, or a GTIN with neither lot nor serial."""
    return parse_digital_link_uri(uri_or_path)


def digital_link_path(pid: ProductId) -> str:
    """``/01/{gtin14}/10/{lot}[/21/{serial}]`` (values percent-encoded)."""
    return pid.to_digital_link("")


def digital_link(pid: ProductId, base: str) -> str:
    """``{base}/01/{gtin14}/10/{lot}[/21/{serial}]``."""
    return pid.to_digital_link(base)


def _link_type_iri(link_type: str) -> str:
    if link_type.startswith("gs1:"):
        return GS1_VOC + link_type[4:]
    if link_type.startswith(("http://", "https://")):
        return link_type
    raise InvalidIdentifierError(
        f"link type must be a gs1: CURIE (e.g. gs1:pip) or an absolute IRI, got {link_type!r}"
    )


def linkset(pid: ProductId, base_url: str, links: dict[str, str], *,
            default: str | None = None, titles: dict[str, str] | None = None,
            language: str | None = None) -> dict:
    """A GS1 Digital Link resolver answer as an RFC 9264 linkset (``application/linkset+json``).

    ``links`` maps link types (``gs1:pip``, ``gs1:recallStatus``, ``gs1:traceability``,
    ``gs1:certificationInfo``, ... or absolute IRIs) to target URLs. ``default`` names the link
    type that is also published as ``gs1:defaultLink`` (the target a plain scan redirects to);
    it defaults to ``gs1:pip`` when present, else the first link. The anchor is the item's
    Digital Link on ``base_url``. Relation types are the full GS1 Web Vocabulary IRIs
    (``https://gs1.org/voc/pip``), as GS1 resolvers publish them.

    Shape::

        {"linkset": [{"anchor": "https://.../01/09506000134352/10/LOT42",
                      "https://gs1.org/voc/defaultLink": [{"href": ..., "title": ...}],
                      "https://gs1.org/voc/pip": [{"href": ..., "title": ...}], ...}]}
    """
    if not links:
        raise InvalidIdentifierError("a linkset needs at least one link")
    if pid.gtin is None:
        raise InvalidIdentifierError("a GS1 Digital Link linkset needs a GTIN; local ids have no Digital Link")
    titles = titles or {}
    anchor = pid.to_digital_link(base_url)
    entry: dict[str, object] = {"anchor": anchor}
    if default is None:
        default = "gs1:pip" if "gs1:pip" in links else next(iter(links))
    if default not in links:
        raise InvalidIdentifierError(f"default link type {default!r} is not among the links")

    def target(link_type: str, href: str) -> dict[str, str]:
        if not isinstance(href, str) or not href.startswith(("http://", "https://", "/")):
            raise InvalidIdentifierError(f"link target for {link_type} must be an http(s) URL, got {href!r}")
        item = {"href": href, "title": titles.get(link_type) or KNOWN_LINK_TYPES.get(link_type, link_type)}
        if language:
            item["hreflang"] = [language]  # type: ignore[assignment]
        return item

    entry[GS1_VOC + "defaultLink"] = [target(default, links[default])]
    for link_type, href in links.items():
        entry.setdefault(_link_type_iri(link_type), [])
        entry[_link_type_iri(link_type)].append(target(link_type, href))  # type: ignore[union-attr]
    return {"linkset": [entry]}
