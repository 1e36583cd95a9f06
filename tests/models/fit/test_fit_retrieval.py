"""Generated retrieval queries have exact relevant sets; simulated users rate like users."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache

import duckdb
import pyarrow as pa
import pytest
from kaizend.handlers.events import EVENT_TYPES
from kaizend.models.fit.retrieval import Register, generate_queries, simulate_feedback
from kaizend.models.fit.sites import generate_sites, load_sites


@cache
def sites() -> pa.Table:
    return generate_sites()


@cache
def queries() -> tuple:
    return tuple(generate_queries(sites(), 300, seed=3))


def _sql_matches(con: duckdb.DuckDBPyConnection, filters: dict) -> set[str]:
    """The relevant set recomputed independently, in SQL over the register table."""
    clauses, params = ["technology = ?"], [filters["technology"]]
    patterns = filters["place_patterns"]
    marks = ", ".join("?" for _ in patterns)
    clauses.append(f"(postcode_district IN ({marks}) OR postcode_area IN ({marks}))")
    params += patterns + patterns
    for key, sql in (("capacity_min_kw", "declared_capacity_kw >= ?"),
                     ("capacity_max_kw", "declared_capacity_kw <= ?"),
                     ("year", "year(commissioning_date) = ?"),
                     ("year_min", "year(commissioning_date) >= ?"),
                     ("year_max", "year(commissioning_date) <= ?"),
                     ("fit_end_year", "year(fit_end_date) = ?")):  # fmt: skip
        if key in filters:
            clauses.append(sql)
            params.append(filters[key])
    rows = con.execute(f"SELECT fit_id FROM sites WHERE {' AND '.join(clauses)}", params)
    return {row[0] for row in rows.fetchall()}


def test_relevant_sites_are_exactly_the_sites_the_filters_match() -> None:
    con = duckdb.connect()
    load_sites(con, sites=sites())
    for query in queries()[:150]:
        assert set(query.relevant_ids) == _sql_matches(con, query.filters), query.text
        assert 1 <= len(query.relevant_ids) <= 20


def test_queries_vary_phrasing_places_and_filters() -> None:
    texts = [query.text for query in queries()]
    assert len(set(texts)) == len(texts)
    joined = " ".join(texts).lower()
    for synonym in ("turbine", "solar", "pv", "biogas", "ad ", "hydro", "chp"):
        assert synonym in joined, synonym
    kinds = Counter(query.filters["place_kind"] for query in queries())
    assert set(kinds) == {"district", "area", "post_town", "town", "county", "region"}
    assert sum("capacity_min_kw" in q.filters or "capacity_max_kw" in q.filters
               for q in queries()) > 75  # fmt: skip
    assert sum(any(k in q.filters for k in ("year", "year_min", "year_max", "fit_end_year"))
               for q in queries()) > 45  # fmt: skip
    assert Counter(len(q.relevant_ids) == 1 for q in queries())[False] > 75


def test_generation_is_deterministic_and_excluded_keys_are_never_asked() -> None:
    again = generate_queries(sites(), 300, seed=3)
    assert [q.text for q in again] == [q.text for q in queries()]
    held_out = {q.key for q in queries()[:150]}
    others = generate_queries(sites(), 150, seed=9, exclude_keys=held_out)
    assert not held_out & {q.key for q in others}


def _oracle(register: Register, chosen: list) -> object:
    """A search that returns two relevant sites, then two irrelevant ones."""
    relevant = {q.text: list(q.relevant_ids) for q in chosen}
    wrong = [str(i) for i in register.ids[:50]]

    def search(texts: list[str]) -> list[list[tuple[str, float]]]:
        results = []
        for text in texts:
            good = relevant[text][:2]
            bad = [doc for doc in wrong if doc not in relevant[text]][:2]
            results.append([(doc, 0.9 - 0.1 * i) for i, doc in enumerate(good + bad)])
        return results

    return search


def test_simulated_users_rate_relevant_results_high_and_events_are_valid() -> None:
    register = Register(sites())
    chosen = [q for q in queries() if len(q.relevant_ids) >= 2][:60]
    events = simulate_feedback(chosen, _oracle(register, chosen), register, seed=1, noise=0.0,
                               look_probability=1.0, patience=1.0, thumbs_share=0.0,
                               query_rating_share=0.0, correction_share=0.5)  # fmt: skip
    by_query = {q.text: q for q in chosen}
    texts = {}
    for event in events:
        body = dict(event)
        EVENT_TYPES[body.pop("kind")].model_validate(body)  # what the ingest handler checks
        if event["kind"] == "query":
            texts[event["query_id"]] = event["text"]
            assert [r["doc_id"] for r in event["output"]["results"]][:2] == list(
                by_query[event["text"]].relevant_ids[:2]
            )
    ratings = Counter()
    for event in events:
        if event["kind"] == "feedback":
            relevant = event["doc_id"] in by_query[texts[event["query_id"]]].relevant_ids
            ratings[(relevant, event["rating"] >= 4)] += 1
        if event["kind"] == "correction":
            query = by_query[texts[event["query_id"]]]
            assert event["corrected_output"] == {"relevant_ids": list(query.relevant_ids)}
    assert ratings[(True, True)] == 120 and ratings[(False, False)] == 120
    assert ratings[(True, False)] == ratings[(False, True)] == 0
    corrections = sum(event["kind"] == "correction" for event in events)
    assert 15 <= corrections <= 45
    assert json.loads(json.dumps(events)) == events  # JSONL-ready for `kaizend publish`


def test_noisy_raters_and_thumbs_appear_in_the_requested_shares() -> None:
    register = Register(sites())
    chosen = [q for q in queries() if len(q.relevant_ids) >= 2][:100]
    events = simulate_feedback(chosen, _oracle(register, chosen), register, seed=2, noise=0.2,
                               look_probability=1.0, patience=1.0, thumbs_share=0.25,
                               query_rating_share=0.5)  # fmt: skip
    feedback = [e for e in events if e["kind"] == "feedback"]
    thumbs = sum("thumbs" in e for e in feedback) / len(feedback)
    assert 0.15 < thumbs < 0.3
    whole_query = sum("doc_id" not in e for e in feedback)
    assert 30 <= whole_query <= 70
    by_query = {q.text: q for q in chosen}
    texts = {e["query_id"]: e["text"] for e in events if e["kind"] == "query"}
    wrong = [
        e for e in feedback
        if "rating" in e and "doc_id" in e
        and (e["doc_id"] in by_query[texts[e["query_id"]]].relevant_ids) != (e["rating"] >= 4)
    ]  # fmt: skip
    rated = sum("rating" in e and "doc_id" in e for e in feedback)
    assert 0.1 < len(wrong) / rated < 0.3


@pytest.mark.parametrize("n", [10, 60])
def test_small_registers_still_give_queries(n: int) -> None:
    small = generate_sites(n=n)
    found = generate_queries(small, 5, seed=0)
    assert len(found) == 5
