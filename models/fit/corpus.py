"""The FIT retriever's corpus: one document per site of the FIT register.

A document is the text the embedder sees plus the site's id (its ``fit_id``) and metadata.
The text names the site the ways a user might: the technology, the capacity with its unit,
the postcode district and area, the post town, the towns and counties around it, the region,
when it was commissioned, its tariff band and rate, and when its tariff ends.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pyarrow as pa
from kaizend.models.fit.gazetteer_data import AREAS
from kaizend.models.fit.retrieval import places_containing
from kaizend.models.retriever.corpus import Document

# What each technology is called in a document (the register's own names are terse).
TECHNOLOGY_NAMES: dict[str, str] = {
    "Wind": "Wind turbine",
    "Photovoltaic": "Solar photovoltaic (PV)",
    "Hydro": "Hydroelectric (hydro)",
    "Anaerobic digestion": "Anaerobic digestion (AD)",
    "Micro CHP": "Micro combined heat and power (CHP)",
}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip


def places_of(district: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(towns, counties) a postcode district lies in, as the gazetteer names them.

    Post towns are left out: the document names the postcode area by its post town anyway.
    """
    places = places_containing(district)
    post_towns = set(AREAS.values())
    towns = tuple(p.name for p in places if p.kind != "county" and p.name not in post_towns)
    counties = tuple(p.name for p in places if p.kind == "county")
    return towns, counties


def format_kw(capacity_kw: float) -> str:
    """A capacity as people write it: "3.92 kW", "500 kW", "1.5 MW (1500 kW)"."""
    plain = f"{capacity_kw:g}"
    if capacity_kw >= 1000:
        return f"{capacity_kw / 1000:g} MW ({plain} kW)"
    return f"{plain} kW"


def describe_site(site: dict[str, Any]) -> str:
    """The document text of one register row (a dict with the register's columns).

    Compact on purpose: encoding cost grows with the tokens, and 40,194 documents are
    embedded for every version.
    """
    district = site["postcode_district"]
    area = site["postcode_area"]
    towns, counties = places_of(district)
    where = [district, *towns, f"{AREAS.get(area, area)} ({area})", *counties, site["region"]]
    commissioned: date = site["commissioning_date"]
    fit_end: date = site["fit_end_date"]
    return (
        f"{TECHNOLOGY_NAMES[site['technology']]}, {format_kw(site['declared_capacity_kw'])}, "
        f"{', '.join(where)}. Commissioned {_MONTHS[commissioned.month - 1]} "
        f"{commissioned.year}. Tariff band {site['tariff_band']}, {site['fit_rate_p_kwh']:g} "
        f"p/kWh, FIT ends {_MONTHS[fit_end.month - 1]} {fit_end.year}."
    )


def site_documents(sites: pa.Table) -> list[Document]:
    """One `Document` per row of the register, in register order."""
    documents = []
    for site in sites.to_pylist():
        metadata = {
            "technology": site["technology"],
            "capacity_kw": float(site["declared_capacity_kw"]),
            "postcode_district": site["postcode_district"],
            "postcode_area": site["postcode_area"],
            "region": site["region"],
            "commissioning_year": site["commissioning_date"].year,
            "commissioning_date": site["commissioning_date"].isoformat(),
            "tariff_band": site["tariff_band"],
            "fit_rate_p_kwh": float(site["fit_rate_p_kwh"]),
            "fit_end_date": site["fit_end_date"].isoformat(),
        }
        documents.append(Document(str(site["fit_id"]), describe_site(site), metadata))
    return documents
