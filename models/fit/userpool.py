"""The questions simulated users ask the FIT search service, each with its ground truth.

The parser learns from `models.fit.querygen`; if simulated users asked the same kind of
questions, retraining on their corrections would have nothing to learn. This pool is written
apart from it: casual register ("up in keighley, any water turbines > half a meg?"), keyword
and punctuated word orders ("turbine sites / dorset / 100 kilowatt tops"), abbreviations and
slang ("mchp", "cogen", "ad", "megs", "nr", "r", "pls"), phrasings the rule parser has no rule
for ("not under 50kw", "pv v wind around skegness", "what do wind farms make a year", "for
sale") and realistic typos (dropped, doubled, swapped and neighbouring keys, in place and
technology names too). No text equals a querygen text: the pool skips any whose normalised
form the generator also produces.

Each `UserQuery` starts as a structured `Intent` (technologies, place, capacity bounds,
FIT id, years, flags); its ``expected`` parse comes from the intent and the gazetteer, never
from the rule parser. `relevant_sites` runs that parse against the site register for the
sites the user wants to see; `matching_sites` says which of some returned sites satisfy it.

Split (`split_pool`): querygen's combination rule (`querygen.split_examples`), 80% traffic
and 20% held out, so a held-out query never has a (technologies, place) or similar slot
combination the traffic pool has: a parser fine-tuned on corrections of traffic is judged
on combinations it never saw corrected.

Measured with `.venv/bin/python bench/parser_userpool.py` (the rule parser through the one
evaluator, `models.llm.evaluate`; pool seed 0, 2026-12-01):

| data set | n | exact match | field accuracy |
|---|---|---|---|
| querygen test split | 450 | 0.922 | 0.969 |
| user pool, traffic | 2,400 | 0.619 | 0.837 |
| user pool, held out | 600 | 0.633 | 0.830 |

On traffic the rules get 0.73 of the questions without a typo right and 0.31 of those with
one (26% have one). Exact text overlap with querygen's 4,500 texts: 0. Phrasing novelty, the
share of texts with a word pair (figures and place names masked) querygen never writes: 0.955
for the pool, against 0.222 for querygen's own test split measured against its train split.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from kaizend.models.fit import gazetteer, querygen
from kaizend.models.fit.gazetteer import Place
from kaizend.models.fit.schema import REPOWERING_MAX_YEARS, SIZE_BANDS, ParsedQuery, to_compact_dict
from kaizend.models.fit.sites import filters_to_sql, query_sites

if TYPE_CHECKING:
    import duckdb

POOL_SIZE = 3_000
"""Distinct questions in the pool (traffic and held out together)."""
POOL_SEED = 0
"""The pool's seed: fixed, so every run holds out the same questions."""
POOLS: tuple[str, ...] = ("traffic", "heldout")
HELDOUT_SHARE = 0.2

INTENT_WEIGHTS: dict[str, float] = {
    "search": 46,
    "rate": 9,
    "lookup": 3,
    "count": 8,
    "total": 6,
    "compare": 7,
    "repower": 5,
    "expiry": 4,
    "acquire": 4,
    "revenue": 8,
}
"""How often users ask each kind of question."""

_TECH_WEIGHTS = {"Wind": 34, "Photovoltaic": 34, "Hydro": 12, "Anaerobic digestion": 12,
                 "Micro CHP": 8}  # fmt: skip

# What users call each technology: as a noun ("wind farms") and as a modifier ("wind" sites).
_TECH_NOUNS: dict[str, tuple[str, ...]] = {
    "Wind": ("wind", "wind", "wind farms", "turbines", "wind turbines", "windfarms", "wind gens",
             "windmills", "onshore wind", "wind sites", "turbine sites", "wind parks"),
    "Photovoltaic": ("solar", "solar", "pv", "PV", "solar pv", "solar farms", "panels",
                     "solar panels", "pv arrays", "rooftop solar", "solar parks", "pv sites",
                     "photovoltaics", "solar kit", "solar roofs"),
    "Hydro": ("hydro", "hydro", "micro hydro", "hydro schemes", "hydroelectric", "run of river",
              "water turbines", "hydro plants", "hydro power", "river turbines"),
    "Anaerobic digestion": ("ad", "AD", "ad plants", "AD plants", "biogas", "biogas plants",
                            "digesters", "farm digesters", "anaerobic digesters",
                            "biomethane plants", "AD sites", "ad units"),
    "Micro CHP": ("chp", "CHP", "micro chp", "mchp", "micro-chp boilers", "chp units", "cogen",
                  "combined heat & power", "domestic chp", "mCHP units"),
}  # fmt: skip
_TECH_MODIFIERS: dict[str, tuple[str, ...]] = {
    "Wind": ("wind", "wind", "turbine", "windfarm"),
    "Photovoltaic": ("solar", "solar", "pv", "PV"),
    "Hydro": ("hydro", "hydroelectric", "micro hydro"),
    "Anaerobic digestion": ("ad", "AD", "biogas"),
    "Micro CHP": ("chp", "micro chp", "mchp", "cogen"),
}
_SITE_WORDS = ("sites", "sites", "installs", "installations", "stuff", "assets", "schemes",
               "projects", "kit")  # fmt: skip

_LEADS = ("", "", "", "", "", "any ", "got any ", "are there any ", "looking for ", "need ",
          "pls show ", "show me ", "can u find ", "can you pull up ", "i want ", "gimme ",
          "find me ", "where r the ", "hi, any ", "quick one - any ", "need a list of ",
          "do we have any ", "anyone got ", "searching ")  # fmt: skip
_TAILS = ("", "", "", "", "", "?", "??", " pls", " please", " thanks", " thx", " cheers",
          " asap", " ta")  # fmt: skip
_LOCATIVES = ("in", "in", "in", "near", "nr", "around", "round", "in and around", "across",
              "within", "up in", "down in", "@")  # fmt: skip

# Capacities users ask about, per technology (kW).
_CAPACITY_VALUES: dict[str, tuple[float, ...]] = {
    "Wind": (6, 10, 11, 50, 100, 225, 250, 330, 500, 800, 1000, 2000, 2500),
    "Photovoltaic": (4, 10, 30, 50, 100, 250, 500, 1000, 2000, 5000),
    "Hydro": (10, 50, 100, 500, 1000, 2000),
    "Anaerobic digestion": (100, 250, 499, 500, 1000, 2000),
    "Micro CHP": (1, 2),
    "": (10, 50, 100, 500, 1000),
}
_MIN_PHRASES = ("bigger than {v}", "over {v}", "over {v}", ">{v}", "> {v}", ">= {v}",
                "at least {v}", "min {v}", "minimum {v}", "upwards of {v}", "more than {v}",
                "{v} minimum", "not under {v}", "anything above {v}", "{v} and up",
                "{v} or bigger", "{v} plus", "north of {v}", "bigger then {v}",
                "starting from {v}", "no smaller than {v}")  # fmt: skip
_MAX_PHRASES = ("under {v}", "under {v}", "<{v}", "< {v}", "<= {v}", "up to {v}", "max {v}",
                "{v} max", "{v} tops", "no bigger than {v}", "smaller than {v}",
                "less than {v}", "below {v}", "sub {v}", "{v} or smaller", "{v} or under",
                "not over {v}", "at most {v}", "{v} and under", "not above {v}",
                "smaller then {v}")  # fmt: skip
_RANGE_PHRASES = ("{a}-{b}", "{a} - {b}", "between {a} and {b}", "{a} to {b}",
                  "from {a} up to {b}", "{a}–{b}", "in the {a} to {b} range",
                  "somewhere between {a} and {b}", "{a} thru {b}")  # fmt: skip
# Sizes said before the noun ("big turbines") and the bands they mean.
_SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "tiny", "little", "smaller", "small scale"),
    "medium": ("medium", "mid-size", "medium sized", "mid sized", "middling"),
    "large": ("big", "large", "huge", "massive", "utility scale", "really big"),
}
_PRE_MIN = ("{v}+", "{v} plus", ">{v}")
_PRE_MAX = ("sub {v}", "sub-{v}", "<{v}")
_YEARS = (2, 3, 4, 5, 5, 6, 7, 8, 10)
_YEAR_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 10: "ten"}

# Neighbouring keys on a UK QWERTY keyboard, for typos.
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_TYPO_SHARE = 0.25
_SECOND_TYPO_SHARE = 0.1


@dataclass(frozen=True)
class Intent:
    """What a user wants to know, before it is put into words."""

    kind: str
    """A key of `INTENT_WEIGHTS`: search, rate (a tariff), lookup (one FIT id), count, total
    (capacity), compare, repower, expiry (tariff ending within ``years``), acquire, revenue."""
    technologies: tuple[str, ...] = ()
    place: Place | None = None
    low: float | None = None
    high: float | None = None
    fit_id: str | None = None
    years: float | None = None
    regional: bool = False

    def parse(self) -> ParsedQuery:
        """The intended parse: what a correct parser answers for any wording of this intent."""
        fields: dict[str, Any] = {"capacity_min_kw": self.low, "capacity_max_kw": self.high}
        if len(self.technologies) == 1:
            fields["technology"] = self.technologies[0]
        elif self.technologies:
            fields["technologies"] = list(self.technologies)
        if self.place is not None:
            fields["location"] = self.place.name
            fields["postcode_patterns"] = list(self.place.postcode_patterns)
        if self.fit_id is not None:
            fields["fit_id"] = self.fit_id
        kind = self.kind
        if kind == "rate":
            fields["query_type"] = "fit_rate"
        elif kind in ("count", "total"):
            fields["query_type"] = "aggregation"
            fields["aggregation"] = "count" if kind == "count" else "total_capacity"
        elif kind == "compare":
            fields["query_type"] = "comparison"
        elif kind == "repower":
            fields["query_intent"] = "repowering_opportunities"
            fields["fit_remaining_max_years"] = self.years or REPOWERING_MAX_YEARS
        elif kind == "acquire":
            fields["query_intent"] = "acquisition_targets"
        elif kind == "expiry":
            fields["fit_remaining_max_years"] = self.years
        elif kind == "revenue":
            fields["include_revenue"] = True
            fields["include_regional"] = self.regional
        return ParsedQuery(**fields)


@dataclass(frozen=True)
class UserQuery:
    """One question of the pool with its ground truth."""

    id: str
    text: str
    expected: dict[str, Any] = field(hash=False)
    """The intended parse as a compact dict (`models.fit.schema.to_compact_dict`)."""
    intent: str
    """The kind of question (a key of `INTENT_WEIGHTS`)."""
    template: str
    """The phrasing the text was made from, with its slots unfilled."""
    typos: int = 0

    @property
    def parsed(self) -> ParsedQuery:
        return ParsedQuery.model_validate(self.expected)

    def to_example(self) -> dict[str, Any]:
        """The evaluators' shape: ``{id, text, expected, category}``."""
        return {"id": self.id, "text": self.text, "expected": self.expected,
                "category": self.intent}  # fmt: skip


def _plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class _Speaker:
    """Random surface choices of one simulated user."""

    def __init__(self, rng: random.Random, places: list[Place], weights: list[float]) -> None:
        self.rng = rng
        self._places = places
        self._weights = weights

    def pick(self, options: Sequence[str]) -> str:
        return self.rng.choice(options)

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def technology(self) -> str:
        return self.rng.choices(tuple(_TECH_WEIGHTS), tuple(_TECH_WEIGHTS.values()))[0]

    def place(self) -> Place:
        if self.chance(0.05):
            # The FIT scheme never covered Northern Ireland (BT).
            area = self.pick([area for area in gazetteer.postcode_areas() if area != "BT"])
            district = self.pick(gazetteer.districts(area))
            return Place(district, "district", (district,))
        return self.rng.choices(self._places, self._weights)[0]

    def place_name(self, place: Place) -> str:
        """The place as typed, without a locative."""
        if place.kind == "district":
            if self.chance(0.35):
                inward = f"{self.rng.randint(1, 9)}{self.pick('ABDEFGHJLNPQRSTUWXYZ')}"
                return f"{place.name} {inward}{self.pick('ABDEFGHJLNPQRSTUWXYZ')}"
            return self.pick((place.name, place.name.lower(), f"{place.name} area",
                              f"postcode {place.name.lower()}"))  # fmt: skip
        aliases = [alias for alias in place.aliases if alias.isascii()]
        name = self.pick(aliases) if aliases and self.chance(0.35) else place.name
        if place.kind == "region" and self.chance(0.4) and not name.startswith("the "):
            name = f"the {name}"
        return name

    def where(self, place: Place) -> str:
        return f"{self.pick(_LOCATIVES)} {self.place_name(place)}"

    def noun(self, technology: str) -> str:
        return self.pick(_TECH_NOUNS[technology])

    def modifier(self, technology: str) -> str:
        return self.pick(_TECH_MODIFIERS[technology])

    def kilowatts(self, value: float) -> str:
        """A capacity as people type it: 1mw, 1 MW, a meg, 1,000kw, half a meg, 250kW."""
        if value >= 1000 and self.chance(0.7):
            number = _plain(value / 1000)
            megs = "meg" if number == "1" else "megs"
            options = [f"{number}mw", f"{number} mw", f"{number}MW", f"{number} MW",
                       f"{number} {megs}", f"{number} megawatt"]  # fmt: skip
            if number == "1":
                options += ["a meg", "a megawatt", "one mw"]
            return self.pick(options)
        if value == 500 and self.chance(0.3):
            return self.pick(("half a meg", "0.5mw", ".5 MW", "half a megawatt"))
        if value == 250 and self.chance(0.2):
            return self.pick(("0.25mw", "quarter of a meg"))
        number = f"{int(value):,}" if value >= 1000 and self.chance(0.5) else _plain(value)
        return number + self.pick(("kw", "kw", "kW", " kw", " kW", "KW", " kilowatt", "kwp"))

    def capacity_bounds(self, technology: str) -> tuple[str, float | None, float | None]:
        """(style, min kW, max kW): how a user bounds the size, and the bounds."""
        values = _CAPACITY_VALUES[technology]
        style = self.rng.choices(("min", "max", "range", "size", "pre"), (44, 22, 14, 12, 8))[0]
        if technology == "Micro CHP" and style in ("range", "size"):
            style = "max"  # Micro CHP is at most 2 kW: sizes and ranges are noise.
        if style == "min":
            return style, self.pick(values), None
        if style == "max":
            return style, None, self.pick(values)
        if style == "range":
            low, high = sorted(self.rng.sample(values, 2))
            return style, low, high
        if style == "pre":
            value = self.pick(values)
            return (style, value, None) if self.chance(0.6) else (style, None, value)
        return style, *SIZE_BANDS[self.pick(tuple(SIZE_BANDS))]

    def capacity_phrase(
        self, style: str, low: float | None, high: float | None
    ) -> tuple[str, bool]:
        """(phrase, goes before the noun) saying exactly the bounds ``low``-``high``."""
        if style == "size":
            size = next(name for name, band in SIZE_BANDS.items() if band == (low, high))
            return self.pick(_SIZE_WORDS[size]), True
        if style == "pre":
            value = low if low is not None else high
            assert value is not None
            figure = self.kilowatts(value).replace(" ", "")
            if not figure[0].isdigit() and not figure.startswith("."):
                figure = f"{_plain(value)}kw"  # "half a meg+" is not something people type.
            return self.pick(_PRE_MIN if low is not None else _PRE_MAX).format(v=figure), True
        if low is not None and high is not None:
            high_text, low_text = self.kilowatts(high), self.kilowatts(low)
            if high_text.endswith(("kw", "kW", "KW")) and self.chance(0.5):
                low_text = _plain(low)  # "100-500kw": one unit for both.
            return self.pick(_RANGE_PHRASES).format(a=low_text, b=high_text), False
        if low is not None:
            return self.pick(_MIN_PHRASES).format(v=self.kilowatts(low)), False
        assert high is not None
        return self.pick(_MAX_PHRASES).format(v=self.kilowatts(high)), False

    def years_phrase(self, years: float) -> str:
        """ "5 years", "5 yrs", "five years"."""
        number = int(years)
        word = _YEAR_WORDS.get(number) if self.chance(0.25) else None
        unit = self.pick(("years", "yrs", "years", "yr") if number > 1 else ("year", "yr"))
        if unit == "yr" and number > 1 and self.chance(0.5):
            unit = "yrs"
        return f"{word or number} {unit}"

    def fit_id(self) -> str:
        if self.chance(0.05):
            return self.pick(("1585", "4004"))
        return str(self.rng.randint(1, 60_000))


# Phrasings of a search, by the slots they hold: T a technology noun, M a technology
# modifier, P a place with its locative, N a bare place name, C a capacity after the noun,
# K a capacity before it, L a lead and Z a tail.
_SEARCH_FRAMES: dict[frozenset[str], tuple[str, ...]] = {
    frozenset("T"): (
        "{L}{T}{Z}", "all {T} pls", "every {M} site on the register", "{M} {S} - the lot",
        "what {T} is there{Z}", "full list of {T}", "{T} only", "just {T}{Z}",
        "whats on the register for {T}", "{M} {S}{Z}",
    ),
    frozenset("TP"): (
        "{L}{T} {P}{Z}", "{N} {T}", "{T} {N}", "{N}: {T}", "{T}, {N}", "{P} - {T}{Z}",
        "{M} {S} {P}{Z}", "where r the {T} {P}", "{T} anywhere {P}?", "do we have {T} {P}",
        "{N} - any {T}?", "{T} ({N})", "{N} {M} {S}", "{T} {P} - show all", "{N} | {T}",
        "what {T} is there {P}", "{T} sites {P}{Z}",
    ),
    frozenset("TC"): (
        "{L}{T} {C}{Z}", "{T} {C}", "{T} that are {C}", "{T} - {C} only", "{T}, {C}",
        "anything {M} {C}?", "{M} {S} {C}{Z}", "{C} {T}", "{T} w/ capacity {C}",
    ),
    frozenset("TK"): ("{L}{K} {T}{Z}", "{K} {T}", "{K} {T} only", "{K} {M} {S}{Z}"),
    frozenset("TPC"): (
        "{L}{T} {P} {C}{Z}", "{L}{T} {C} {P}{Z}", "{N} {T} {C}", "{T}, {N}, {C}",
        "{N}: {T} {C}", "{T} / {N} / {C}", "{P}, any {T} {C}?", "are there {T} {C} {P}?",
        "{T} {P} - {C} only", "{T} {C} anywhere {P}?", "{M} {S} {P} {C}{Z}",
        "{N} {M} {S} {C}", "{T} {P} w/ capacity {C}", "{C} {T} {P}", "{T} {P}, {C}{Z}",
        "{N} - {T} - {C}",
    ),
    frozenset("TPK"): (
        "{L}{K} {T} {P}{Z}", "{N} {K} {T}", "{K} {T}, {N}", "{P}: {K} {T}{Z}",
        "{K} {M} {S} {P}", "{N} | {K} {T}",
    ),
    frozenset("P"): (
        "everything {P}{Z}", "whats on the register {P}", "all sites {P}", "{N} - all installs",
        "anything {P}?", "{N} renewables", "fit sites {P}{Z}", "list everything {P}",
    ),
    frozenset("PC"): (
        "anything {C} {P}?", "all sites {C} {P}", "{N} sites {C}", "installs {P} {C}{Z}",
    ),
    frozenset("PK"): ("{K} sites {P}{Z}", "{N} {K} installs", "any {K} schemes {P}"),
}  # fmt: skip

_RATE_ID_FRAMES = (
    "whats fit {I} paying", "tariff on {I}?", "rate for #{I}", "fit {I} rate?",
    "how much does fit {I} get per kwh", "p/kwh on installation {I}", "{I} - what tariff?",
    "generation rate, site {I}", "whats the tariff for id {I}", "{I} tariff pls",
    "what rate is #{I} on", "rate? fit id {I}", "fit no. {I} - tariff", "tariff {I}",
    "pence per kwh for {I}",
)  # fmt: skip
_LOOKUP_FRAMES = (
    "fit {I} details", "info on installation {I}", "whats #{I}", "id {I}?", "pull up {I}",
    "tell me about fit no {I}", "lookup {I}", "site {I} pls", "record for fit {I}",
    "everything on #{I}", "{I} - details?",
)  # fmt: skip
_RATE_FRAMES = (
    "what do {T}{W} get per kwh", "tariffs for {T}{W}", "fit rates {T}{W}",
    "{T}{W} - what rate?", "whats the p/kwh for {T}{W}", "rates paid to {T}{W}",
    "tariff levels, {T}{W}", "what tariff r {T}{W} on",
)  # fmt: skip
_COUNT_FRAMES = (
    "how many {T}{W}?", "how many {T} r there{W}", "no. of {T}{W}", "# of {T}{W}",
    "count {T}{W}", "{M} count{W}", "{T}{W} - how many?", "number of {M} {S}{W}",
    "how many {M} {S}{W} pls", "tally of {T}{W}", "{T}{W}: count",
)  # fmt: skip
_TOTAL_FRAMES = (
    "total mw of {M}{W}", "how much {M} capacity{W}", "{M} capacity{W} in total",
    "combined kw of {T}{W}", "how many megs of {M}{W}", "installed {M} capacity{W}, total",
    "sum of {M} capacity{W}", "whats the total {M} output{W}", "overall {M} capacity{W}",
    "total {M} kw{W}", "{M} mw{W} all added up",
)  # fmt: skip
_COMPARE_FRAMES = (
    "{A} v {B}{W}", "{A} vs. {B}{W}", "{A} or {B} - which is bigger{W}?",
    "{A} compared to {B}{W}", "{A} against {B}{W}", "how does {A} stack up against {B}{W}",
    "{A}/{B} comparison{W}", "compare {A}, {B}{W}", "{A} vs {B} numbers{W}",
    "{A} and {B} side by side{W}", "{A} or {B}{W}, which has more?",
)  # fmt: skip
_COMPARE_THREE_FRAMES = ("{A} v {B} v {C}{W}", "compare {A}, {B} and {C}{W}",
                         "{A}/{B}/{C} comparison{W}")  # fmt: skip
_COMPARE_NAMES: dict[str, tuple[str, ...]] = {
    "Wind": ("wind", "wind", "turbines"), "Photovoltaic": ("solar", "solar", "pv"),
    "Hydro": ("hydro",), "Anaerobic digestion": ("ad", "biogas"), "Micro CHP": ("chp", "mchp"),
}  # fmt: skip
_REPOWER_FRAMES = (
    "old {T}{W} worth repowering", "repower candidates: {T}{W}", "{T}{W} we could repower",
    "any {T}{W} due a repower?", "repowering - {T}{W}", "{T}{W} that need repowering",
    "which {T}{W} are up for repowering", "{T}{W} to re-power",
)  # fmt: skip
_REPOWER_YEARS = (" - fit ending in under {Y}", ", less than {Y} of fit left",
                  " with fit running out within {Y}")  # fmt: skip
_EXPIRY_FRAMES = (
    "{T}{W} whose fit runs out in the next {Y}", "{T}{W} with <{Y} of fit left",
    "{T}{W} coming off fit within {Y}", "{T}{W} losing the tariff within {Y}",
    "fit ends within {Y}: {T}{W}", "{T}{W}, tariff expiring inside {Y}",
    "which {T}{W} have under {Y} of fit remaining",
)  # fmt: skip
_ACQUIRE_FRAMES = (
    "{T}{W} for sale", "{T}{W} we might buy", "{T}{W} worth acquiring",
    "acquisition targets - {T}{W}", "{T}{W} to invest in", "could we buy any {T}{W}?",
    "{T}{W} to buy up", "shortlist {T}{W} to acquire",
)  # fmt: skip
_REVENUE_FRAMES = (
    "how much do {T}{W} earn", "what do {T}{W} make a year", "income from {T}{W}",
    "{T}{W} - revenue?", "£ from {T}{W}", "annual revenue {T}{W}", "{T}{W} earnings",
    "money made by {T}{W}", "what are {T}{W} worth per year in fit payments",
)  # fmt: skip
_REGIONAL_FRAMES = (
    "{T}{W} revenue adjusted for region", "regionally adjusted income, {T}{W}",
    "revenue with regional factors for {T}{W}", "region-adjusted earnings of {T}{W}",
    "{T}{W} income incl. regional adjustment",
)  # fmt: skip


def _fill(frame: str, slots: dict[str, str]) -> str:
    return re.sub(r"\{([A-Z])\}", lambda match: slots[match.group(1)], frame)


def _draw_intent(speaker: _Speaker) -> tuple[Intent, str | None]:
    kind = speaker.rng.choices(tuple(INTENT_WEIGHTS), tuple(INTENT_WEIGHTS.values()))[0]
    rng = speaker.rng
    if kind == "lookup" or (kind == "rate" and speaker.chance(0.6)):
        return Intent(kind, fit_id=speaker.fit_id()), None
    if kind == "compare":
        count = 3 if speaker.chance(0.12) else 2
        chosen: list[str] = []
        while len(chosen) < count:
            tech = speaker.technology()
            if tech not in chosen:
                chosen.append(tech)
        place = speaker.place() if speaker.chance(0.7) else None
        return Intent(kind, technologies=tuple(chosen), place=place), None
    if kind == "search":
        roll = rng.random()
        if roll < 0.05:
            technologies: tuple[str, ...] = ()
        elif roll < 0.09:
            first = speaker.technology()
            second = speaker.technology()
            technologies = (first,) if first == second else (first, second)
        else:
            technologies = (speaker.technology(),)
        place_chance, cap_chance = (0.75, 0.5) if technologies else (1.0, 0.3)
    elif kind in ("count", "total"):
        technologies = (speaker.technology(),) if kind == "total" or speaker.chance(0.9) else ()
        place_chance, cap_chance = 0.85, 0.15 if kind == "count" else 0.0
    else:
        technologies = (speaker.technology(),)
        place_chance, cap_chance = 0.75, 0.25 if kind in ("rate", "repower", "acquire") else 0.0
    place = speaker.place() if speaker.chance(place_chance) else None
    style = low = high = None
    if len(technologies) < 2 and speaker.chance(cap_chance):
        style, low, high = speaker.capacity_bounds(technologies[0] if technologies else "")
    years = None
    if kind == "expiry" or (kind == "repower" and speaker.chance(0.25)):
        years = float(speaker.pick(_YEARS))
    return Intent(
        kind, technologies=technologies, place=place, low=low, high=high, years=years,
        regional=kind == "revenue" and speaker.chance(0.3),
    ), style  # fmt: skip


def _render(speaker: _Speaker, intent: Intent, style: str | None) -> tuple[str, str]:
    """(template, text) for an intent; ``style`` says how its capacity bounds are phrased."""
    tech = intent.technologies[0] if intent.technologies else None
    slots: dict[str, str] = {
        "L": speaker.pick(_LEADS), "Z": speaker.pick(_TAILS), "S": speaker.pick(_SITE_WORDS),
    }  # fmt: skip
    if tech is not None:
        slots["T"] = speaker.noun(tech)
        slots["M"] = speaker.modifier(tech)
        if len(intent.technologies) == 2:
            joiner = speaker.pick((" or ", " and/or ", " + ", " & ", " or "))
            other = intent.technologies[1]
            slots["T"] = f"{speaker.noun(tech)}{joiner}{speaker.noun(other)}"
            slots["M"] = f"{speaker.modifier(tech)}{joiner}{speaker.modifier(other)}"
    if intent.place is not None:
        slots["P"] = speaker.where(intent.place)
        slots["N"] = speaker.place_name(intent.place)
    slots["W"] = f" {slots['P']}" if "P" in slots else ""
    capacity = (
        speaker.capacity_phrase(style, intent.low, intent.high) if style is not None else None
    )
    kind = intent.kind
    if kind == "search":
        wanted = {"T" if tech else "", "P" if intent.place else ""}
        if capacity is not None:
            slots["K" if capacity[1] else "C"] = capacity[0]
            wanted.add("K" if capacity[1] else "C")
        frame = speaker.pick(_SEARCH_FRAMES[frozenset(wanted - {""})])
    elif intent.fit_id is not None:
        slots["I"] = intent.fit_id
        frame = speaker.pick(_RATE_ID_FRAMES if kind == "rate" else _LOOKUP_FRAMES)
    elif kind == "compare":
        names = [speaker.pick(_COMPARE_NAMES[t]) for t in intent.technologies]
        slots.update(zip("ABC", names, strict=False))
        frames = _COMPARE_THREE_FRAMES if len(names) == 3 else _COMPARE_FRAMES
        frame = speaker.pick(frames)
    else:
        if tech is None:
            slots["T"] = slots["M"] = speaker.pick(("sites", "installs", "fit sites"))
            slots["S"] = ""
        if capacity is not None:
            # A capacity goes with the technology: "big turbines", "turbines over 1mw".
            if capacity[1]:
                slots["T"] = f"{capacity[0]} {slots['T']}"
            else:
                slots["T"] = f"{slots['T']} {capacity[0]}"
        if intent.years is not None:
            slots["Y"] = speaker.years_phrase(intent.years)
        frames = {
            "rate": _RATE_FRAMES, "count": _COUNT_FRAMES, "total": _TOTAL_FRAMES,
            "repower": _REPOWER_FRAMES, "expiry": _EXPIRY_FRAMES, "acquire": _ACQUIRE_FRAMES,
            "revenue": _REGIONAL_FRAMES if intent.regional else _REVENUE_FRAMES,
        }[kind]  # fmt: skip
        if capacity is not None:
            frames = tuple(frame for frame in frames if "{T}" in frame)
        frame = speaker.pick(frames)
        if kind == "repower" and intent.years is not None:
            frame += speaker.pick(_REPOWER_YEARS)
    text = _fill(frame, slots)
    return frame, re.sub(r"\s+", " ", text).strip()


def _neighbours(letter: str) -> str:
    for row in _KEYBOARD_ROWS:
        at = row.find(letter)
        if at >= 0:
            return row[max(0, at - 1) : at] + row[at + 1 : at + 2]
    return ""


def _typo(rng: random.Random, text: str) -> str:
    """One slip of the fingers in a word of four letters or more."""
    words = text.split(" ")
    candidates = [i for i, word in enumerate(words) if len(word) >= 4 and word.isalpha()]
    if not candidates:
        return text
    index = rng.choice(candidates)
    word = words[index]
    at = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("drop", "double", "swap", "near", "near"))
    if kind == "drop":
        word = word[:at] + word[at + 1 :]
    elif kind == "double":
        word = word[:at] + word[at] + word[at:]
    elif kind == "swap" and word[at] != word[at + 1]:
        word = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    else:
        near = _neighbours(word[at].lower())
        if not near:
            return text
        word = word[:at] + rng.choice(near) + word[at + 1 :]
    words[index] = word
    return " ".join(words)


def _style(rng: random.Random, text: str) -> tuple[str, int]:
    roll = rng.random()
    if roll < 0.78:
        text = text.lower()  # Most people type in lower case.
    elif roll < 0.86:
        text = text[:1].upper() + text[1:]
    typos = 0
    if rng.random() < _TYPO_SHARE:
        text, typos = _typo(rng, text), 1
        if rng.random() < _SECOND_TYPO_SHARE:
            text, typos = _typo(rng, text), 2
    return text, typos


def _place_pool() -> tuple[list[Place], list[float]]:
    # Towns and counties are what a site developer asks about; whole nations less often.
    kind_weights = {"county": 4.0, "city": 3.0, "town": 3.0, "region": 1.5, "nation": 1.5,
                    "area": 0.5}  # fmt: skip
    places = [
        place for place in gazetteer.all_places() if place.postcode_patterns != ("BT",)
        and not all(pattern.startswith("BT") for pattern in place.postcode_patterns)
    ]  # fmt: skip
    return places, [kind_weights[place.kind] for place in places]


@cache
def _querygen_keys() -> frozenset[str]:
    return frozenset(
        querygen.dedupe_key(example["text"]) for example in querygen.generate_examples()
    )


def query_id(text: str, expected: dict[str, Any]) -> str:
    """Stable id of a pool question: a hash of its text and intended parse."""
    return f"up-{querygen.example_id(text, expected)}"


def generate_pool(seed: int = POOL_SEED, n: int = POOL_SIZE) -> list[UserQuery]:
    """``n`` distinct questions with their intended parses, deterministic per seed.

    A text whose normalised form querygen's generator (seed 0) also produces is skipped, so
    the pool and the parser's generated training data share no question.
    """
    rng = random.Random(seed)
    places, weights = _place_pool()
    speaker = _Speaker(rng, places, weights)
    taken = _querygen_keys()
    seen: set[str] = set()
    pool: list[UserQuery] = []
    for _ in range(n * 50):
        if len(pool) == n:
            break
        intent, style = _draw_intent(speaker)
        template, raw = _render(speaker, intent, style)
        text, typos = _style(rng, raw)
        key = querygen.dedupe_key(text)
        if key in seen or key in taken:
            continue
        seen.add(key)
        expected = to_compact_dict(intent.parse())
        pool.append(UserQuery(query_id(text, expected), text, expected, intent.kind, template,
                              typos))  # fmt: skip
    if len(pool) < n:
        raise RuntimeError(f"only {len(pool)} distinct questions; add phrasings or ask fewer")
    return pool


def split_pool(
    queries: Sequence[UserQuery], *, seed: int = POOL_SEED
) -> dict[str, list[UserQuery]]:
    """``{"traffic", "heldout"}``: querygen's split rule, whole slot combinations to one side."""
    by_id = {query.id: query for query in queries}
    examples = [query.to_example() for query in queries]
    split = querygen.split_examples(examples, seed=seed, fractions=(1 - HELDOUT_SHARE, 0.0,
                                                                    HELDOUT_SHARE))  # fmt: skip
    return {
        "traffic": [by_id[example["id"]] for example in split["train"]],
        "heldout": [by_id[example["id"]] for example in split["test"]],
    }


@cache
def _pools(seed: int, n: int) -> dict[str, tuple[UserQuery, ...]]:
    split = split_pool(generate_pool(seed, n), seed=seed)
    return {name: tuple(queries) for name, queries in split.items()}


def pool(name: str = "traffic", *, seed: int = POOL_SEED, n: int = POOL_SIZE) -> list[UserQuery]:
    """The traffic or held-out questions of the pool (cached per seed and size)."""
    if name not in POOLS:
        raise ValueError(f"unknown pool {name!r}; choose from {', '.join(POOLS)}")
    return list(_pools(seed, n)[name])


def sample_traffic(queries: Sequence[UserQuery], n: int, *, seed: int) -> list[UserQuery]:
    """``n`` questions as users send them: a seeded shuffle, repeated when ``n`` is larger."""
    if not queries:
        raise ValueError("no questions to sample from")
    rng = random.Random(seed)
    out: list[UserQuery] = []
    while len(out) < n:
        order = list(queries)
        rng.shuffle(order)
        out.extend(order[: n - len(out)])
    return out


def relevant_sites(
    con: duckdb.DuckDBPyConnection, query: UserQuery, *, table: str = "sites", limit: int = 100
) -> tuple[str, ...] | None:
    """The sites the user wants to see, as the service lists them for the intended parse
    (largest first); None for counts, totals and comparisons, whose answer is a figure."""
    parsed = query.parsed
    if parsed.query_type not in ("search", "fit_rate"):
        return None
    return tuple(row["fit_id"] for row in query_sites(con, parsed, table=table, limit=limit))


def matching_sites(
    con: duckdb.DuckDBPyConnection, query: UserQuery, site_ids: Sequence[str], *,
    table: str = "sites",
) -> set[str]:  # fmt: skip
    """Which of ``site_ids`` satisfy the intended filters (the relevant ones among them)."""
    if not site_ids:
        return set()
    where, params = filters_to_sql(query.parsed)
    marks = ", ".join("?" for _ in site_ids)
    rows = con.execute(
        f'SELECT fit_id FROM "{table}" WHERE {where} AND fit_id IN ({marks})',
        [*params, *site_ids],
    ).fetchall()
    return {row[0] for row in rows}


_TOKEN = re.compile(r"[a-z0-9']+|[^a-z0-9\s']")


@cache
def _place_words() -> frozenset[str]:
    surfaces = (s for place in gazetteer.all_places() for s in (place.name, *place.aliases))
    words = {word for surface in surfaces for word in _TOKEN.findall(surface.lower())}
    return frozenset(words - {"of", "the", "and", "upon", "on", "in", "&", "-", "."})


def _bigrams(text: str) -> set[tuple[str, str]]:
    # Figures and place names are slots, not phrasing: "over 100kw in devon" and
    # "over 2mw in kent" are phrased the same.
    places = _place_words()
    words = [
        "#" if any(ch.isdigit() for ch in word) else "@" if word in places else word
        for word in _TOKEN.findall(text.lower())
    ]
    return set(zip(words, words[1:], strict=False))


def phrasing_novelty(texts: Sequence[str], reference: Sequence[str]) -> float:
    """Share of ``texts`` with a word pair (figures and place names masked) that no reference
    text has: how often a question is phrased in a way the reference never phrases anything."""
    known = set().union(*(_bigrams(text) for text in reference))
    novel = sum(bool(_bigrams(text) - known) for text in texts)
    return novel / len(texts) if texts else 0.0
