"""Retrieval queries over the FIT register whose relevant sites are known, and simulated users.

`generate_queries` picks an *anchor* site, keeps a few of its attributes as filters
(technology, a place at some granularity, a capacity bound, a commissioning year or a FIT
end year) and renders them as a search a user might type, with varied synonyms ("AD",
"biogas plants", "PV", "turbines"), place kinds (district, post town, town, county, region)
and capacity phrasings. The relevant sites are every site the filters match, so a query's
answer is exact; queries with more than ``max_relevant`` matches are made narrower or
dropped, so ranking matters.

`simulate_feedback` plays users of the search service: it sends each query to a search
function (the serving index), and rates what came back with some noise (a share of raters
get it backwards), sometimes with thumbs instead of stars or for the whole query, and for a
share of queries a reviewer sends a correction naming the relevant sites. The result is a
list of events, each with a ``kind``, as ``kaizend publish`` reads them.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property
from typing import Any

import numpy as np
import pyarrow as pa
from kaizend.models.fit import gazetteer
from kaizend.models.fit.gazetteer import Place
from kaizend.models.fit.gazetteer_data import AREAS
from kaizend.models.fit.users import judgement, star_rating

Search = Callable[[Sequence[str]], list[list[tuple[str, float]]]]
"""Texts -> for each, the ranked (doc_id, score) the serving index returns."""

# What users call each technology: nouns for the sites, and modifiers put before "sites".
_TECH_NOUNS: dict[str, tuple[str, ...]] = {
    "Wind": ("wind turbines", "turbines", "wind farms", "windmills", "wind generators",
             "wind power sites", "wind installations", "turbine sites"),
    "Photovoltaic": ("solar panels", "solar PV", "PV systems", "PV arrays", "solar arrays",
                     "photovoltaic installations", "solar roofs", "solar farms",
                     "PV installations", "solar installations"),
    "Hydro": ("hydro schemes", "hydroelectric plants", "water turbines", "micro hydro",
              "hydropower sites", "run-of-river schemes", "hydro plants"),
    "Anaerobic digestion": ("AD plants", "biogas plants", "anaerobic digesters", "digesters",
                            "biogas sites", "AD facilities", "biomethane plants",
                            "anaerobic digestion plants"),
    "Micro CHP": ("micro CHP units", "CHP boilers", "combined heat and power units",
                  "cogeneration units", "micro-CHP", "CHP systems"),
}  # fmt: skip
_TECH_MODIFIERS: dict[str, tuple[str, ...]] = {
    "Wind": ("wind", "wind power", "turbine"),
    "Photovoltaic": ("solar", "PV", "photovoltaic", "solar PV"),
    "Hydro": ("hydro", "hydroelectric", "water power"),
    "Anaerobic digestion": ("AD", "biogas", "anaerobic digestion"),
    "Micro CHP": ("CHP", "micro CHP", "cogeneration"),
}
_SITE_NOUNS = ("sites", "installations", "projects", "systems", "generators", "schemes")
_TECH_WEIGHTS = {"Wind": 32, "Photovoltaic": 28, "Hydro": 15, "Anaerobic digestion": 13,
                 "Micro CHP": 12}  # fmt: skip
_LEADS = ("", "", "", "", "show me ", "find ", "list ", "search ", "any ", "looking for ",
          "which ", "all ")  # fmt: skip
_LOCATIVES = ("in", "in", "in", "near", "around", "at", "located in")
_ROUND_KW = (1, 2, 3, 4, 5, 10, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200, 250, 300, 400, 500,
             750, 1000, 1500, 2000, 2500, 3000, 5000)  # fmt: skip
_MIN_PHRASES = ("over {v}", "above {v}", "more than {v}", "at least {v}", "bigger than {v}",
                "{v} or more", "{v}+", "larger than {v}", "exceeding {v}")  # fmt: skip
_MAX_PHRASES = ("under {v}", "below {v}", "less than {v}", "up to {v}", "smaller than {v}",
                "{v} or less", "at most {v}", "no bigger than {v}")  # fmt: skip
_RANGE_PHRASES = ("between {a} and {b}", "{a} to {b}", "{a}-{b}", "from {a} to {b}")
_EXACT_PHRASES = ("{v}", "{v}", "rated {v}", "of {v}", "with {v} capacity")
_YEAR_PHRASES = ("commissioned in {y}", "installed in {y}", "built in {y}", "from {y}",
                 "commissioned {y}", "{y} installations", "connected in {y}")  # fmt: skip
_SINCE_PHRASES = ("commissioned since {y}", "installed after {y}", "newer than {y}",
                  "built since {y}")  # fmt: skip
_BEFORE_PHRASES = ("commissioned before {y}", "installed before {y}", "older than {y}",
                   "built before {y}", "pre-{y}")  # fmt: skip
_FIT_END_PHRASES = ("with FIT ending in {y}", "tariff ending {y}", "FIT expiring in {y}",
                    "whose feed-in tariff ends in {y}", "FIT end {y}")  # fmt: skip


@dataclass(frozen=True)
class RetrievalQuery:
    """A search with its relevant site ids (every site matching ``filters``)."""

    id: str
    text: str
    relevant_ids: tuple[str, ...]
    filters: dict[str, Any] = field(compare=False)
    key: str = ""
    """The filters in canonical form: two queries with the same key ask the same thing."""

    def to_example(self) -> dict[str, Any]:
        """The evaluation shape: ``{id, text, relevant_ids}``."""
        return {"id": self.id, "text": self.text, "relevant_ids": list(self.relevant_ids)}


class Register:
    """The register as numpy columns, to find the sites a set of filters matches."""

    def __init__(self, sites: pa.Table) -> None:
        self.ids = np.array(sites.column("fit_id").to_pylist(), dtype=object)
        self.technology = np.array(sites.column("technology").to_pylist(), dtype=object)
        self.capacity = np.array(sites.column("declared_capacity_kw").to_pylist(), dtype=float)
        self.district = np.array(sites.column("postcode_district").to_pylist(), dtype=object)
        self.area = np.array(sites.column("postcode_area").to_pylist(), dtype=object)
        self.year = np.array([d.year for d in sites.column("commissioning_date").to_pylist()])
        self.fit_end_year = np.array([d.year for d in sites.column("fit_end_date").to_pylist()])
        self.row = {fit_id: index for index, fit_id in enumerate(self.ids)}
        self._place_masks: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def place_mask(self, patterns: Sequence[str]) -> np.ndarray:
        """Sites whose district or area is among ``patterns``."""
        key = " ".join(sorted(patterns))
        if key not in self._place_masks:
            self._place_masks[key] = np.isin(self.district, list(patterns)) | np.isin(
                self.area, list(patterns)
            )
        return self._place_masks[key]

    def filter_masks(self, filters: dict[str, Any]) -> dict[str, np.ndarray]:
        """One boolean mask per filter of a query."""
        masks: dict[str, np.ndarray] = {}
        if "technology" in filters:
            masks["technology"] = self.technology == filters["technology"]
        if "place_patterns" in filters:
            masks["place"] = self.place_mask(filters["place_patterns"])
        low, high = filters.get("capacity_min_kw"), filters.get("capacity_max_kw")
        if low is not None or high is not None:
            mask = np.ones(len(self), dtype=bool)
            if low is not None:
                mask &= self.capacity >= low
            if high is not None:
                mask &= self.capacity <= high
            masks["capacity"] = mask
        if "year" in filters or "year_min" in filters or "year_max" in filters:
            mask = np.ones(len(self), dtype=bool)
            if "year" in filters:
                mask &= self.year == filters["year"]
            if "year_min" in filters:
                mask &= self.year >= filters["year_min"]
            if "year_max" in filters:
                mask &= self.year <= filters["year_max"]
            masks["year"] = mask
        if "fit_end_year" in filters:
            masks["fit_end"] = self.fit_end_year == filters["fit_end_year"]
        return masks

    def matching(self, filters: dict[str, Any]) -> np.ndarray:
        """Row indices of the sites every filter matches."""
        mask = np.ones(len(self), dtype=bool)
        for part in self.filter_masks(filters).values():
            mask &= part
        return np.flatnonzero(mask)

    @cached_property
    def by_technology(self) -> dict[str, np.ndarray]:
        """Row indices per technology."""
        return {tech: np.flatnonzero(self.technology == tech) for tech in _TECH_WEIGHTS}


@cache
def _places_by_pattern() -> dict[str, tuple[Place, ...]]:
    index: dict[str, list[Place]] = {}
    for place in gazetteer.all_places():
        if place.kind in ("town", "city", "county"):
            for pattern in place.postcode_patterns:
                index.setdefault(pattern, []).append(place)
    return {pattern: tuple(places) for pattern, places in index.items()}


def places_containing(district: str) -> list[Place]:
    """Towns, cities and counties whose postcodes include ``district`` (its own first)."""
    index = _places_by_pattern()
    found = [*index.get(district, ()), *index.get(gazetteer.area_of(district), ())]
    return list(dict.fromkeys(found))


def _plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class _Writer:
    """Random surface forms for the filters of one query."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, options: Sequence[str]) -> str:
        return self.rng.choice(options)

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def tech(self, technology: str) -> str:
        if self.chance(0.6):
            return self.pick(_TECH_NOUNS[technology])
        return f"{self.pick(_TECH_MODIFIERS[technology])} {self.pick(_SITE_NOUNS)}"

    def kw(self, value: float) -> str:
        if value >= 1000 and self.chance(0.6):
            return f"{_plain(value / 1000)}{self.pick(('MW', ' MW', ' megawatts'))}"
        return f"{_plain(value)}{self.pick(('kW', ' kW', 'kw', ' kilowatts', 'KW'))}"

    def place(self, place: Place) -> str:
        if place.kind == "district":
            return self.pick((place.name, place.name, f"postcode {place.name}",
                              f"the {place.name} district"))  # fmt: skip
        if place.kind == "area" and place.name.isupper():
            return self.pick((f"the {place.name} postcode area", f"{place.name} postcodes",
                              f"postcode area {place.name}"))  # fmt: skip
        aliases = [alias for alias in place.aliases if alias.isascii()]
        name = place.name if not aliases or self.chance(0.7) else self.pick(aliases)
        if place.kind == "region" and self.chance(0.4):
            name = f"the {name}"
        return name


def _anchor_places(district: str) -> list[tuple[str, Place]]:
    """The places an anchor site can be asked about, by granularity."""
    area = gazetteer.area_of(district)
    options: list[tuple[str, Place]] = [("district", Place(district, "district", (district,)))]
    options.append(("area", Place(area, "area", (area,))))
    post_town = gazetteer.resolve(AREAS[area])
    if post_town is not None:
        options.append(("post_town", post_town))
    for place in places_containing(district):
        options.append(("county" if place.kind == "county" else "town", place))
    region = gazetteer.resolve(gazetteer.region_of(district))
    if region is not None:
        options.append(("region", region))
    return options


_GRANULARITY_WEIGHTS = {"district": 3, "area": 1, "post_town": 3, "town": 3, "county": 4,
                        "region": 2}  # fmt: skip


def _capacity_filter(writer: _Writer, capacity: float) -> tuple[str, dict[str, float], bool]:
    """(phrase, bounds, goes before the noun) around an anchor capacity."""
    below = [v for v in _ROUND_KW if v < capacity]
    above = [v for v in _ROUND_KW if v >= capacity]
    modes = ["exact"] if capacity in _ROUND_KW or capacity >= 10 else []
    modes += ["min"] * 3 if below else []
    modes += ["max"] * 2 if above else []
    modes += ["range"] * 2 if below and above else []
    mode = writer.pick(modes or ["exact"])
    if mode == "min":
        value = writer.pick(below[-4:])
        phrase = writer.pick(_MIN_PHRASES).format(v=writer.kw(value))
        return phrase, {"capacity_min_kw": value}, False
    if mode == "max":
        value = writer.pick(above[:4])
        phrase = writer.pick(_MAX_PHRASES).format(v=writer.kw(value))
        return phrase, {"capacity_max_kw": value}, False
    if mode == "range":
        low, high = writer.pick(below[-3:]), writer.pick(above[:3])
        phrase = writer.pick(_RANGE_PHRASES).format(a=_plain(low), b=writer.kw(high))
        return phrase, {"capacity_min_kw": low, "capacity_max_kw": high}, False
    phrase = writer.pick(_EXACT_PHRASES).format(v=writer.kw(capacity))
    # A bare figure reads as a modifier: "500kW wind turbines".
    return phrase, {"capacity_min_kw": capacity, "capacity_max_kw": capacity}, phrase[0].isdigit()


def _time_filter(writer: _Writer, year: int, fit_end_year: int) -> tuple[str, dict[str, int]]:
    draw = writer.rng.random()
    if draw < 0.6:
        return writer.pick(_YEAR_PHRASES).format(y=year), {"year": year}
    if draw < 0.72 and year >= 2012:
        return writer.pick(_SINCE_PHRASES).format(y=year), {"year_min": year}
    if draw < 0.84 and year <= 2017:
        return writer.pick(_BEFORE_PHRASES).format(y=year + 1), {"year_max": year}
    return writer.pick(_FIT_END_PHRASES).format(y=fit_end_year), {"fit_end_year": fit_end_year}


def _key(filters: dict[str, Any]) -> str:
    parts = {k: v for k, v in filters.items() if k not in ("place_patterns", "place_kind")}
    return "|".join(f"{k}={parts[k]}" for k in sorted(parts))


def _render(writer: _Writer, tech: str, place: str | None, capacity: tuple[str, bool] | None,
            when: str | None) -> str:  # fmt: skip
    noun = writer.tech(tech)
    if capacity is not None and capacity[1]:
        noun = f"{capacity[0]} {noun}"
    tail = []
    if capacity is not None and not capacity[1]:
        tail.append(capacity[0])
    if place is not None:
        located = f"{writer.pick(_LOCATIVES)} {place}"
        if writer.chance(0.25) and capacity is None:
            noun = f"{place} {noun}"
        else:
            tail.append(located)
    if when is not None:
        tail.append(when)
    if writer.chance(0.3):
        writer.rng.shuffle(tail)
    text = " ".join([noun, *tail])
    return f"{writer.pick(_LEADS)}{text}".strip()


def generate_queries(
    sites: pa.Table | Register,
    n: int,
    *,
    seed: int = 0,
    min_relevant: int = 1,
    max_relevant: int = 20,
    exclude_keys: frozenset[str] | set[str] = frozenset(),
) -> list[RetrievalQuery]:
    """``n`` distinct retrieval queries over the register, each with 1-20 relevant sites.

    Deterministic for a (register, n, seed). Queries whose filter key is in
    ``exclude_keys`` are never produced (a held-out set asks nothing the training set asks).
    """
    register = sites if isinstance(sites, Register) else Register(sites)
    rng = random.Random(seed)
    writer = _Writer(rng)
    technologies = [t for t in _TECH_WEIGHTS if len(register.by_technology[t])]
    weights = [_TECH_WEIGHTS[t] for t in technologies]
    queries: list[RetrievalQuery] = []
    seen_keys: set[str] = set(exclude_keys)
    seen_texts: set[str] = set()
    attempts = 0
    while len(queries) < n:
        attempts += 1
        if attempts > 200 * n + 1000:
            raise ValueError(
                f"could not generate {n} queries with {min_relevant}-{max_relevant} relevant "
                f"sites from a register of {len(register)} sites; ask for fewer"
            )
        tech = rng.choices(technologies, weights)[0]
        row = int(rng.choice(register.by_technology[tech]))
        places = _anchor_places(register.district[row])
        kinds = [kind for kind, _ in places]
        kind_weights = [_GRANULARITY_WEIGHTS[k] / kinds.count(k) for k in kinds]
        granularity, place = places[rng.choices(range(len(places)), kind_weights)[0]]
        filters: dict[str, Any] = {
            "technology": tech,
            "place": place.name,
            "place_kind": granularity,
            "place_patterns": list(place.postcode_patterns),
        }
        capacity = when = None
        if rng.random() < 0.45:
            phrase, bounds, before = _capacity_filter(writer, float(register.capacity[row]))
            filters.update(bounds)
            capacity = (phrase, before)
        if rng.random() < 0.35:
            when, years = _time_filter(
                writer, int(register.year[row]), int(register.fit_end_year[row])
            )
            filters.update(years)
        matched = register.matching(filters)
        # Too broad: narrow it the way a user refining a search would.
        if len(matched) > max_relevant and capacity is None:
            phrase, bounds, before = _capacity_filter(writer, float(register.capacity[row]))
            filters.update(bounds)
            capacity = (phrase, before)
            matched = register.matching(filters)
        if len(matched) > max_relevant and when is None:
            when, years = _time_filter(
                writer, int(register.year[row]), int(register.fit_end_year[row])
            )
            filters.update(years)
            matched = register.matching(filters)
        if not min_relevant <= len(matched) <= max_relevant:
            continue
        key = _key(filters)
        if key in seen_keys:
            continue
        text = _render(writer, tech, writer.place(place), capacity, when)
        if text.lower() in seen_texts:
            continue
        seen_keys.add(key)
        seen_texts.add(text.lower())
        query_id = hashlib.sha1(f"{seed}:{len(queries)}:{text}".encode()).hexdigest()[:12]
        queries.append(
            RetrievalQuery(
                id=f"rq-{query_id}",
                text=text,
                relevant_ids=tuple(str(register.ids[i]) for i in matched),
                filters=filters,
                key=key,
            )
        )
    return queries


def simulate_feedback(
    queries: Sequence[RetrievalQuery],
    search: Search,
    register: pa.Table | Register,
    *,
    seed: int = 0,
    k: int = 10,
    model_version: str = "retriever-v0",
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC),
    look_probability: float = 0.7,
    patience: float = 0.8,
    noise: float = 0.08,
    thumbs_share: float = 0.2,
    query_rating_share: float = 0.1,
    correction_share: float = 0.3,
    batch_size: int = 64,
) -> list[dict[str, Any]]:
    """Query, feedback and correction events for ``queries`` served by ``search``.

    Each query is searched once (top ``k``). A user looks at rank r with probability
    ``look_probability * patience**(r-1)`` and rates it 4-5 when it matches every filter,
    2-3 when it matches most, 1-2 otherwise; ``noise`` of the ratings are reversed
    (`models.fit.users.star_rating`). A ``thumbs_share`` of judgements come as thumbs
    up/down (none for a middling 3), a ``query_rating_share`` of queries also get one
    rating of the whole answer (judged by its first result), and a ``correction_share`` get
    a reviewer's correction naming every relevant site. Events come in time order, one
    query a minute from ``start``.
    """
    register = register if isinstance(register, Register) else Register(register)
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for offset in range(0, len(queries), batch_size):
        chunk = queries[offset : offset + batch_size]
        started = datetime.now(UTC)
        ranked = search([query.text for query in chunk])
        latency_ms = (datetime.now(UTC) - started).total_seconds() * 1000 / max(1, len(chunk))
        for number, (query, results) in enumerate(zip(chunk, ranked, strict=True), offset):
            events.extend(
                _query_events(
                    query,
                    results[:k],
                    register,
                    rng,
                    number,
                    start,
                    model_version,
                    latency_ms,
                    look_probability,
                    patience,
                    noise,
                    thumbs_share,
                    query_rating_share,
                    correction_share,
                )  # fmt: skip
            )
    return events


def _query_events(
    query: RetrievalQuery,
    results: list[tuple[str, float]],
    register: Register,
    rng: random.Random,
    number: int,
    start: datetime,
    model_version: str,
    latency_ms: float,
    look_probability: float,
    patience: float,
    noise: float,
    thumbs_share: float,
    query_rating_share: float,
    correction_share: float,
) -> list[dict[str, Any]]:
    ts = start + timedelta(minutes=number)
    query_id = f"{query.id}-{number}"
    namespace = uuid.UUID(int=rng.getrandbits(128))
    masks = register.filter_masks(query.filters)

    def share(doc_id: str) -> float:
        row = register.row.get(doc_id)
        if row is None or not masks:
            return 0.0
        return sum(bool(mask[row]) for mask in masks.values()) / len(masks)

    def event_id(suffix: str) -> str:
        return str(uuid.uuid5(namespace, suffix))

    events: list[dict[str, Any]] = [
        {
            "kind": "query",
            "event_id": event_id("query"),
            "query_id": query_id,
            "ts": ts.isoformat(),
            "task": "retriever",
            "text": query.text,
            "model_version": model_version,
            "output": {
                "results": [{"doc_id": doc_id, "score": round(s, 4)} for doc_id, s in results]
            },
            "latency_ms": round(latency_ms, 2),
            "service": "fit-search-sim",
        }
    ]

    def judge(rating: int, seconds: int, doc_id: str | None, suffix: str) -> None:
        said = judgement(rng, rating, thumbs_share)
        if said is None:
            return
        body: dict[str, Any] = {
            "kind": "feedback",
            "event_id": event_id(suffix),
            "query_id": query_id,
            "ts": (ts + timedelta(seconds=seconds)).isoformat(),
        }
        if doc_id is not None:
            body["doc_id"] = doc_id
        events.append({**body, **said})

    for rank, (doc_id, _) in enumerate(results, 1):
        if rng.random() < look_probability * patience ** (rank - 1):
            judge(star_rating(rng, share(doc_id), noise), rank, doc_id, f"rate-{doc_id}")
    if results and rng.random() < query_rating_share:
        judge(star_rating(rng, share(results[0][0]), noise), 30, None, "rate-query")
    if rng.random() < correction_share:
        events.append(
            {
                "kind": "correction",
                "event_id": event_id("correction"),
                "query_id": query_id,
                "ts": (ts + timedelta(seconds=45)).isoformat(),
                "corrected_output": {"relevant_ids": list(query.relevant_ids)},
                "author": "reviewer",
            }
        )
    return events
