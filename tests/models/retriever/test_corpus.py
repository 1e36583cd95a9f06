"""Each FIT site becomes one document that names it the ways users search for it."""

from __future__ import annotations

from functools import cache

from kaizend.models.fit.corpus import site_documents
from kaizend.models.fit.sites import SITE_COUNT, generate_sites
from kaizend.models.retriever.corpus import Document, corpus_fingerprint


@cache
def register_documents() -> list[Document]:
    return site_documents(generate_sites())


def test_one_document_per_site_named_by_its_fit_id() -> None:
    documents = register_documents()
    assert len(documents) == SITE_COUNT
    assert [d.id for d in documents] == generate_sites().column("fit_id").to_pylist()
    assert len({d.id for d in documents}) == SITE_COUNT


def test_the_berkshire_wind_site_reads_as_users_would_search_for_it() -> None:
    [site] = [d for d in register_documents() if d.id == "4004"]
    for words in ("Wind turbine", "500 kW", "RG17", "Hungerford", "Reading (RG)", "Berkshire",
                  "South East", "Commissioned June 2013", "Wind >100-500kW",
                  "FIT ends June 2033"):  # fmt: skip
        assert words in site.text, words
    assert site.metadata["capacity_kw"] == 500.0
    assert site.metadata["commissioning_year"] == 2013
    assert site.metadata["postcode_district"] == "RG17"


def test_megawatt_sites_say_both_units_and_the_fingerprint_follows_the_text() -> None:
    documents = site_documents(generate_sites(n=400))
    big = [d for d in documents if d.metadata["capacity_kw"] >= 1000]
    assert big and all(" MW (" in d.text for d in big)
    changed = [*documents[:-1], Document(documents[-1].id, "other", {})]
    assert corpus_fingerprint(documents) == corpus_fingerprint(
        site_documents(generate_sites(n=400))
    )
    assert corpus_fingerprint(documents) != corpus_fingerprint(changed)
