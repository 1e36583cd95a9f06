"""The parser's training set: natural-language FIT questions with their expected parse.

Each example starts as a structured intent (technology, place, capacity bounds, flags) and
is rendered into text with varied synonyms, abbreviations, units and word order. The
expected output comes from the intent and the gazetteer, never from the rule parser, so the
rule parser can be scored against it like any other candidate.

Split rule (`split_examples`): examples are grouped by their *combination*, the pair of
slots a parser has to get right together: (technologies, place) when both are present,
else (technologies, capacity bounds), else (place, capacity bounds). A combination lives
wholly in one split, so validation and test contain only combinations never seen in
training. Examples with fewer than two of those slots are split one by one.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

from kaizend.models.fit import gazetteer
from kaizend.models.fit.gazetteer import Place
from kaizend.models.fit.schema import (
    REPOWERING_MAX_YEARS,
    SIZE_BANDS,
    TECHNOLOGIES,
    ParsedQuery,
    to_compact_dict,
)

CATEGORY_COUNTS: dict[str, int] = {
    "basic_technology": 500,
    "location_mapping": 1000,
    "capacity_filtering": 500,
    "combined_filters": 1000,
    "fit_rate_lookups": 300,
    "regional_calculations": 300,
    "aggregations": 200,
    "comparisons": 200,
    "business_queries": 500,
}
"""Examples per category, as in the FIT LoRA plan (4,500 in all)."""

SPLITS: tuple[str, ...] = ("train", "validation", "test")

Example = dict[str, Any]
Fields = dict[str, Any]

# Plural noun phrases a user might say for each technology, and the modifiers that go
# before a word like "sites".
_TECH_NOUNS: dict[str, tuple[str, ...]] = {
    "Wind": ("wind turbines", "wind farms", "turbines", "windfarms", "wind projects",
             "wind generators", "wind power sites", "wind energy sites", "wind installations",
             "wind farm sites"),
    "Photovoltaic": ("solar panels", "solar farms", "solar installations", "PV systems",
                     "PV installations", "photovoltaic systems", "solar PV sites",
                     "solar arrays", "photovoltaic installations", "solar parks"),
    "Hydro": ("hydro schemes", "hydroelectric plants", "hydro sites", "water turbines",
              "hydropower schemes", "hydro-electric stations", "micro hydro schemes",
              "hydro installations"),
    "Anaerobic digestion": ("anaerobic digestion plants", "AD plants", "biogas plants",
                            "anaerobic digesters", "digesters", "biogas sites",
                            "AD facilities", "anaerobic digestion sites"),
    "Micro CHP": ("micro CHP units", "CHP units", "combined heat and power units",
                  "cogeneration units", "CHP systems", "micro-CHP installations",
                  "combined heat and power plants", "micro CHP boilers"),
}  # fmt: skip
_TECH_MODIFIERS: dict[str, tuple[str, ...]] = {
    "Wind": ("wind", "wind", "wind turbine", "wind power"),
    "Photovoltaic": ("solar", "solar", "PV", "photovoltaic", "solar PV"),
    "Hydro": ("hydro", "hydro", "hydroelectric", "hydropower", "water power"),
    "Anaerobic digestion": ("anaerobic digestion", "AD", "biogas", "anaerobic"),
    "Micro CHP": ("CHP", "micro CHP", "combined heat and power", "cogeneration"),
}
_SITE_NOUNS = ("sites", "sites", "installations", "projects", "systems", "assets", "schemes",
               "generators", "plants")  # fmt: skip
_GENERIC_NOUNS = ("sites", "installations", "projects", "renewable sites",
                  "renewable installations", "generators", "FIT sites", "FIT installations",
                  "renewable energy projects", "assets")  # fmt: skip
_LEADS = ("", "", "", "", "show me ", "show ", "find ", "find all ", "list ", "list all ",
          "give me ", "get ", "search for ", "display ", "i need ", "i'm looking for ",
          "can you find ", "please show ", "pull up ", "look up ", "what are the ")  # fmt: skip
_LOCATIVES = ("in", "in", "in", "in", "near", "around", "across", "within", "located in",
              "based in")  # fmt: skip

# Capacity figures people ask about, per technology (kW).
_CAPACITY_VALUES: dict[str, tuple[float, ...]] = {
    "Wind": (5, 10, 15, 20, 50, 100, 150, 200, 250, 300, 500, 750, 800, 1000, 1500, 2000),
    "Photovoltaic": (4, 10, 25, 30, 50, 100, 150, 200, 250, 500, 1000, 1500, 2000, 5000),
    "Hydro": (15, 20, 50, 100, 200, 500, 1000, 1500),
    "Anaerobic digestion": (100, 250, 500, 750, 1000, 1500, 2000),
    "Micro CHP": (1, 1.5, 2),
    "": (10, 50, 100, 250, 500, 1000, 2000),
}
_MIN_PHRASES = ("over {v}", "over {v}", "above {v}", "more than {v}", "greater than {v}",
                "at least {v}", "bigger than {v}", "larger than {v}", "exceeding {v}",
                "{v} or more", "{v} and above", "with capacity over {v}",
                "with a capacity of at least {v}", "rated above {v}", "of more than {v}",
                "in excess of {v}", "no less than {v}", "> {v}")  # fmt: skip
_MAX_PHRASES = ("under {v}", "under {v}", "below {v}", "less than {v}", "smaller than {v}",
                "up to {v}", "at most {v}", "{v} or less", "{v} and below", "no more than {v}",
                "not exceeding {v}", "with capacity under {v}", "with a capacity below {v}",
                "rated below {v}", "of less than {v}", "< {v}")  # fmt: skip
_RANGE_PHRASES = ("between {a} and {b}", "between {a} and {b}", "{a}-{b}", "{a} to {b}",
                  "from {a} to {b}", "in the {a}-{b} range", "sized {a} to {b}")  # fmt: skip
_SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "small-scale", "small"),
    "medium": ("medium", "medium-sized", "mid-sized", "medium-scale"),
    "large": ("large", "large-scale", "big", "utility-scale"),
}
# Spelled-out sizes and demonyms: phrasings outside the rule parser's vocabulary that a
# learned parser should still get right.
_CAPACITY_WORDS: dict[float, tuple[str, ...]] = {
    10: ("ten kilowatts",),
    50: ("fifty kilowatts", "fifty kW"),
    100: ("a hundred kilowatts", "one hundred kW"),
    250: ("a quarter of a megawatt",),
    500: ("half a megawatt", "five hundred kilowatts"),
    1000: ("a megawatt", "one megawatt"),
    1500: ("one and a half megawatts",),
    2000: ("two megawatts",),
    5000: ("five megawatts",),
}
_DEMONYMS: dict[str, str] = {
    "Scotland": "Scottish",
    "Wales": "Welsh",
    "England": "English",
    "Cornwall": "Cornish",
    "Northern Ireland": "Northern Irish",
}
_YEARS = (2, 3, 4, 5, 5, 6, 7, 8, 10, 12, 15)
_DISTRICT_SHARE = 0.06
"""Share of places typed as a postcode district ("RG17"), as the plan's examples do."""
_YEAR_WORDS = {2: "two", 3: "three", 5: "five", 10: "ten"}


class _Render:
    """Random surface choices for the slots of one example."""

    def __init__(self, rng: random.Random, places: list[Place], weights: list[float]) -> None:
        self.rng = rng
        self._places = places
        self._weights = weights

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return self.rng.choice(options)

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def technology(self) -> str:
        # Solar and wind dominate real questions as they dominate the register.
        return self.rng.choices(TECHNOLOGIES, (30, 35, 15, 10, 10))[0]

    def tech_noun(self, technology: str) -> str:
        return self.pick(_TECH_NOUNS[technology])

    def tech_sites(self, technology: str) -> str:
        """A technology phrase: a plural noun, or a modifier with a site noun."""
        if self.chance(0.5):
            return self.tech_noun(technology)
        return f"{self.pick(_TECH_MODIFIERS[technology])} {self.pick(_SITE_NOUNS)}"

    def place(self) -> Place:
        if self.chance(_DISTRICT_SHARE):
            area = self.pick(gazetteer.postcode_areas())
            district = self.pick(gazetteer.districts(area))
            return Place(district, "district", (district,))
        return self.rng.choices(self._places, self._weights)[0]

    def place_name(self, place: Place) -> str:
        if place.kind == "district":
            return self.pick(
                (place.name, place.name, f"postcode {place.name}", f"the {place.name} district")
            )
        if place.kind == "area" and place.name.isupper():
            return self.pick(
                (
                    f"the {place.name} postcode area",
                    f"postcode area {place.name}",
                    f"{place.name} postcodes",
                    f"the {place.name} area",
                )
            )
        aliases = [alias for alias in place.aliases if alias.isascii()]
        name = place.name if not aliases or self.chance(0.6) else self.pick(aliases)
        if place.kind == "region" and not name.startswith("the ") and self.chance(0.5):
            name = f"the {name}"
        return name

    def prefix_name(self, place: Place) -> str:
        """A place used as a modifier: "Yorkshire wind farms", "Scottish hydro schemes"."""
        if place.name in _DEMONYMS and self.chance(0.8):
            return _DEMONYMS[place.name]
        return self.place_name(place)

    def location(self, place: Place) -> str:
        return f"{self.pick(_LOCATIVES)} {self.place_name(place)}"

    def kilowatts(self, value: float, technology: str) -> str:
        """Render a capacity in kW with a unit users type: 100kW, 1.5MW, 250 kilowatts."""
        if value in _CAPACITY_WORDS and self.chance(0.1):
            return self.pick(_CAPACITY_WORDS[value])
        if value >= 1000 and self.chance(0.65):
            number = _plain(value / 1000)
            units = ["MW", "mw", " MW", " megawatt" if number == "1" else " megawatts"]
            if technology == "Photovoltaic":
                units.append("MWp")
            return number + self.pick(units)
        if 100 <= value < 1000 and value % 100 == 0 and self.chance(0.08):
            return f"{_plain(value / 1000)}MW"
        number = f"{int(value):,}" if value >= 1000 and self.chance(0.5) else _plain(value)
        units = ["kw", "kW", " kW", " KW", "KW", " kilowatts", "kw", "kW"]
        if technology == "Photovoltaic":
            units.append("kWp")
        return number + self.pick(units)

    def capacity(self, technology: str) -> tuple[str, str, float | None, float | None]:
        """(placement, phrase, min kW, max kW); placement "pre" goes before the noun."""
        values = _CAPACITY_VALUES[technology]
        mode = self.rng.choices(
            ("min", "max", "range", "size", "plus", "sub"), (45, 20, 15, 15, 4, 2)
        )[0]
        if technology == "Micro CHP" and mode in ("size", "range"):
            mode = "max"  # Micro CHP is at most 2 kW, so size words and ranges are noise.
        if mode == "min":
            value = self.pick(values)
            phrase = self.pick(_MIN_PHRASES).format(v=self.kilowatts(value, technology))
            return "post", phrase, value, None
        if mode == "max":
            value = self.pick(values)
            phrase = self.pick(_MAX_PHRASES).format(v=self.kilowatts(value, technology))
            return "post", phrase, None, value
        if mode == "plus":
            value = self.pick(values)
            return "pre", f"{self.kilowatts(value, technology).replace(' ', '')}+", value, None
        if mode == "sub":
            value = self.pick(values)
            return "pre", f"sub-{self.kilowatts(value, technology).replace(' ', '')}", None, value
        if mode == "range":
            low, high = sorted(self.rng.sample(values, 2))
            high_text = self.kilowatts(high, technology)
            low_text = self.kilowatts(low, technology)
            shared_unit = high_text.lower().endswith(("kw", "kilowatts"))
            if shared_unit and self.chance(0.5):
                low_text = _plain(low)  # "between 100 and 500 kW": one unit for both.
            phrase = self.pick(_RANGE_PHRASES).format(a=low_text, b=high_text)
            return "post", phrase, low, high
        size = self.pick(tuple(_SIZE_WORDS))
        low_bound, high_bound = SIZE_BANDS[size]
        return "pre", self.pick(_SIZE_WORDS[size]), low_bound, high_bound


def _plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _place_pool() -> tuple[list[Place], list[float]]:
    # Counties and cities are what people ask about most; whole nations (England: 100+
    # areas) and bare postcode areas less often. Districts are drawn apart, see place().
    kind_weights = {
        "county": 4.0,
        "city": 2.5,
        "town": 1.2,
        "region": 2.0,
        "nation": 3.0,
        "area": 1.0,
    }
    places = list(gazetteer.all_places())
    weights = [kind_weights[place.kind] for place in places]
    for index, place in enumerate(places):
        if place.name == "England":
            weights[index] = 1.0
        if place.name in ("Yorkshire", "Berkshire", "Scotland", "Wales", "Cornwall", "Devon"):
            weights[index] *= 2  # The plan's own examples.
    for area in gazetteer.postcode_areas():
        places.append(Place(area, "area", (area,)))
        weights.append(0.15)
    return places, weights


def _fields(
    technology: str | None = None,
    technologies: list[str] | None = None,
    place: Place | None = None,
    low: float | None = None,
    high: float | None = None,
    **extra: Any,
) -> Fields:
    fields: Fields = {"capacity_min_kw": low, "capacity_max_kw": high, **extra}
    if technology:
        fields["technology"] = technology
    if technologies:
        fields["technologies"] = technologies
    if place is not None:
        fields["location"] = place.name
        fields["postcode_patterns"] = list(place.postcode_patterns)
    return fields


def _with_tech(render: _Render, technology: str, placement: str, cap: str) -> str:
    if placement == "pre":
        return f"{cap} {render.tech_sites(technology)}"
    return f"{render.tech_sites(technology)} {cap}"


def _basic_technology(render: _Render) -> tuple[str, Fields]:
    tech = render.technology()
    noun, sites = render.tech_noun(tech), render.tech_sites(tech)
    modifier, site = render.pick(_TECH_MODIFIERS[tech]), render.pick(_SITE_NOUNS)
    text = render.pick(
        (
            f"{render.pick(_LEADS)}{sites}",
            f"{render.pick(_LEADS)}all {sites}",
            f"where are the {noun}?",
            f"what {noun} do we have?",
            f"{modifier} {site} in the database",
            f"i want to see {noun}",
            f"{noun} please",
            f"any {noun}?",
            f"{modifier} {site}",
            f"which {noun} are on the register?",
            f"list every {modifier} site",
            f"show {modifier} {site} on the register",
            f"{modifier}",
            f"all the {noun}",
        )
    )
    return text, _fields(tech)


def _location_mapping(render: _Render) -> tuple[str, Fields]:
    place = render.place()
    where, name = render.location(place), render.prefix_name(place)
    if render.chance(0.4):
        generic = render.pick(_GENERIC_NOUNS)
        text = render.pick(
            (
                f"{render.pick(_LEADS)}{generic} {where}",
                f"what is installed {where}?",
                f"renewables {where}",
                f"everything {where}",
                f"{render.pick(_LEADS)}all {generic} {where}",
                f"{name} {generic}",
                f"what {generic} are there {where}?",
                f"which {generic} are {where}?",
            )
        )
        return text, _fields(place=place)
    tech = render.technology()
    sites = render.tech_sites(tech)
    text = render.pick(
        (
            f"{render.pick(_LEADS)}{sites} {where}",
            f"{render.pick(_LEADS)}{sites} {where}",
            f"{name} {render.tech_noun(tech)}",
            f"{sites} {where} please",
            f"are there any {render.tech_noun(tech)} {where}?",
            f"{where}, {sites}",
            f"{render.pick(_TECH_MODIFIERS[tech])} {where}",
        )
    )
    return text, _fields(tech, place=place)


def _capacity_filtering(render: _Render) -> tuple[str, Fields]:
    if render.chance(0.35):
        placement, cap, low, high = render.capacity("")
        generic = render.pick(_GENERIC_NOUNS)
        if placement == "pre":
            text = f"{render.pick(_LEADS)}{cap} {generic}"
        else:
            text = render.pick(
                (
                    f"{render.pick(_LEADS)}{generic} {cap}",
                    f"anything {cap}",
                    f"which {generic} are {cap}?",
                    f"{render.pick(_LEADS)}all {generic} {cap}",
                )
            )
        return text, _fields(low=low, high=high)
    tech = render.technology()
    placement, cap, low, high = render.capacity(tech)
    phrase = _with_tech(render, tech, placement, cap)
    if placement == "post" and render.chance(0.2):
        text = f"which {render.tech_noun(tech)} are {cap}?"
    else:
        text = f"{render.pick(_LEADS)}{phrase}"
    return text, _fields(tech, low=low, high=high)


def _combined_filters(render: _Render) -> tuple[str, Fields]:
    tech, place = render.technology(), render.place()
    placement, cap, low, high = render.capacity(tech)
    where, name = render.location(place), render.prefix_name(place)
    lead = render.pick(_LEADS)
    if placement == "pre":
        text = render.pick(
            (
                f"{lead}{cap} {render.tech_sites(tech)} {where}",
                f"{name} {cap} {render.tech_noun(tech)}",
                f"{where}, {cap} {render.tech_sites(tech)}",
                f"are there any {cap} {render.tech_noun(tech)} {where}?",
            )
        )
    else:
        text = render.pick(
            (
                f"{lead}{render.tech_sites(tech)} {cap} {where}",
                f"{lead}{render.pick(_TECH_MODIFIERS[tech])} sites {cap} {where}",
                f"{lead}{render.tech_sites(tech)} {where} {cap}",
                f"{name} {render.tech_noun(tech)} {cap}",
                f"{where}, {render.tech_sites(tech)} {cap}",
                f"are there any {render.tech_noun(tech)} {cap} {where}?",
                f"which {render.tech_noun(tech)} {where} are {cap}?",
                f"{render.pick(_TECH_MODIFIERS[tech])} {where} {cap}",
            )
        )
    return text, _fields(tech, place=place, low=low, high=high)


def _fit_id(render: _Render) -> str:
    if render.chance(0.05):
        return render.pick(("1585", "4004"))
    return str(render.rng.randint(1, 60_000))


def _fit_rate_lookups(render: _Render) -> tuple[str, Fields]:
    roll = render.rng.random()
    if roll < 0.55:
        fit_id = _fit_id(render)
        text = render.pick(
            (
                f"what is the fit rate for fit id {fit_id}",
                f"fit rate for FIT {fit_id}",
                f"what tariff does fit id {fit_id} get?",
                f"show the tariff for installation {fit_id}",
                f"FIT ID {fit_id} rate",
                f"rate for site {fit_id}",
                f"what's the feed-in tariff rate for fit #{fit_id}?",
                f"tariff rate of installation {fit_id}",
                f"what fit rate is FIT {fit_id} on?",
                f"look up the generation tariff for fit id {fit_id}",
                f"fit id {fit_id}: what rate?",
                f"p/kWh for fit {fit_id}",
                f"current FIT rate for installation #{fit_id}",
            )
        )
        return text, _fields(query_type="fit_rate", fit_id=fit_id)
    if roll < 0.75:
        fit_id = _fit_id(render)
        text = render.pick(
            (
                f"show fit id {fit_id}",
                f"details for FIT {fit_id}",
                f"look up installation {fit_id}",
                f"find site id {fit_id}",
                f"FIT {fit_id}",
                f"what do we know about fit id {fit_id}?",
                f"pull up installation #{fit_id}",
                f"fit id {fit_id}",
            )
        )
        return text, _fields(fit_id=fit_id)
    tech = render.technology()
    place = render.place() if render.chance(0.5) else None
    placement, cap, low, high = (
        render.capacity(tech) if render.chance(0.6) else ("", "", None, None)
    )
    phrase = _with_tech(render, tech, placement, cap) if cap else render.tech_sites(tech)
    where = f" {render.location(place)}" if place else ""
    text = render.pick(
        (
            f"what is the fit rate for {phrase}{where}?",
            f"tariff rates for {phrase}{where}",
            f"what generation tariff do {phrase}{where} get?",
            f"fit rates for {phrase}{where}",
            f"feed-in tariff for {phrase}{where}",
            f"what rate do {phrase}{where} get?",
        )
    )
    return text, _fields(tech, place=place, low=low, high=high, query_type="fit_rate")


def _optional_slots(
    render: _Render, tech: str, place_chance: float, cap_chance: float
) -> tuple[str, str, Place | None, float | None, float | None]:
    """(technology phrase, location phrase with leading space, place, min, max)."""
    place = render.place() if render.chance(place_chance) else None
    where = f" {render.location(place)}" if place else ""
    if render.chance(cap_chance):
        placement, cap, low, high = render.capacity(tech)
        return _with_tech(render, tech, placement, cap), where, place, low, high
    return render.tech_sites(tech), where, place, None, None


def _regional_calculations(render: _Render) -> tuple[str, Fields]:
    tech = render.technology()
    phrase, where, place, low, high = _optional_slots(render, tech, 0.5, 0.25)
    noun = render.tech_noun(tech)
    modifier = render.pick(_TECH_MODIFIERS[tech])
    roll = render.rng.random()
    if roll < 0.5:
        flags = {"include_regional": True, "include_revenue": True}
        text = render.pick(
            (
                f"show regional adjusted revenue for all {phrase}{where}",
                f"regionally adjusted income for {phrase}{where}",
                f"calculate revenue for {phrase}{where} with regional adjustments",
                f"what's the region-adjusted revenue of {phrase}{where}?",
                f"estimate {modifier} revenue{where} using regional factors",
                f"regional revenue breakdown for {phrase}{where}",
                f"show regional adjusted revenue for {phrase}{where}",
            )
        )
    elif roll < 0.8:
        flags = {"include_revenue": True}
        text = render.pick(
            (
                f"how much revenue do {phrase}{where} generate?",
                f"estimated income from {phrase}{where}",
                f"annual earnings of {phrase}{where}",
                f"revenue for {phrase}{where}",
                f"what do {phrase}{where} earn?",
                f"show revenue of {phrase}{where}",
            )
        )
    else:
        flags = {"include_regional": True}
        text = render.pick(
            (
                f"apply regional factors to {phrase}{where}",
                f"regionally adjusted output for {phrase}{where}",
                f"{phrase}{where} with regional adjustment",
                f"regional performance of {noun}{where}",
            )
        )
    if phrase not in text:
        low = high = None  # The phrasing drew no capacity, so the intent has none.
    return text, _fields(tech, place=place, low=low, high=high, **flags)


def _aggregations(render: _Render) -> tuple[str, Fields]:
    tech = render.technology() if render.chance(0.8) else None
    place = render.place() if render.chance(0.7) else None
    where = f" {render.location(place)}" if place else ""
    low = high = None
    cap = ""
    if tech and render.chance(0.3):
        placement, cap_phrase, low, high = render.capacity(tech)
        phrase = _with_tech(render, tech, placement, cap_phrase)
        cap = cap_phrase
    elif tech:
        phrase = render.tech_sites(tech)
    else:
        phrase = render.pick(_GENERIC_NOUNS)
    if render.chance(0.55):
        text = render.pick(
            (
                f"how many {phrase} are there{where}?",
                f"how many {phrase}{where}?",
                f"number of {phrase}{where}",
                f"count the {phrase}{where}",
                f"count of {phrase}{where}",
                f"total number of {phrase}{where}",
                f"how many {phrase} do we have{where}?",
            )
        )
        return text, _fields(
            tech, place=place, low=low, high=high, query_type="aggregation", aggregation="count"
        )
    if tech and not cap:
        modifier = render.pick(_TECH_MODIFIERS[tech])
        text = render.pick(
            (
                f"total capacity of {phrase}{where}",
                f"what is the combined capacity of {phrase}{where}?",
                f"how much {modifier} capacity is installed{where}?",
                f"how many MW of {modifier} are there{where}?",
                f"total installed {modifier} capacity{where}",
                f"aggregate capacity of {phrase}{where}",
            )
        )
    else:
        text = render.pick(
            (
                f"total capacity of {phrase}{where}",
                f"sum of installed capacity for {phrase}{where}",
                f"what is the combined capacity of {phrase}{where}?",
                f"total installed capacity of {phrase}{where}",
            )
        )
    return text, _fields(
        tech,
        place=place,
        low=low,
        high=high,
        query_type="aggregation",
        aggregation="total_capacity",
    )


def _comparisons(render: _Render) -> tuple[str, Fields]:
    count = 3 if render.chance(0.15) else 2
    chosen: list[str] = []
    while len(chosen) < count:
        tech = render.technology()
        if tech not in chosen:
            chosen.append(tech)
    place = render.place() if render.chance(0.65) else None
    where = f" {render.location(place)}" if place else ""
    low = high = None
    cap = ""
    if render.chance(0.2) and "Micro CHP" not in chosen:
        placement, cap_phrase, low, high = render.capacity("")
        if placement == "pre":
            low = high = None  # "compare large wind and solar" is ambiguous; skip it.
        else:
            cap = f" {cap_phrase}"
    nouns = render.chance(0.4)
    names = [render.tech_noun(t) if nouns else render.pick(_TECH_MODIFIERS[t]) for t in chosen]
    if count == 3:
        first = f"{names[0]}, {names[1]} and {names[2]}"
        text = render.pick(
            (
                f"compare {first}{cap}{where}",
                f"{names[0]} vs {names[1]} vs {names[2]}{where}{cap}",
                f"comparison of {first}{where}{cap}",
            )
        )
    else:
        one, two = names
        sites = "" if nouns else f" {render.pick(_SITE_NOUNS)}"
        text = render.pick(
            (
                f"compare {one} and {two}{where}{cap}",
                f"{one} vs {two}{where}{cap}",
                f"{one} versus {two}{cap}{where}",
                f"how do {one} and {two}{sites} compare{where}?",
                f"{one} compared with {two}{where}{cap}",
                f"difference between {one} and {two}{sites}{where}",
                f"comparison of {one} and {two}{sites}{cap}{where}",
                f"compare {one} with {two}{sites}{where}",
            )
        )
    if cap not in text:
        low = high = None  # The phrasing drew no capacity, so the intent has none.
    return text, _fields(
        technologies=chosen, place=place, low=low, high=high, query_type="comparison"
    )


def _business_queries(render: _Render) -> tuple[str, Fields]:
    tech = render.rng.choices(TECHNOLOGIES, (45, 30, 15, 7, 3))[0]
    phrase, where, place, low, high = _optional_slots(render, tech, 0.65, 0.45)
    noun = render.tech_noun(tech)
    roll = render.rng.random()
    years_left = render.pick(_YEARS)
    years = (
        _YEAR_WORDS[years_left]
        if years_left in _YEAR_WORDS and render.chance(0.3)
        else str(years_left)
    )
    if roll < 0.45:
        explicit = render.chance(0.25)
        text = render.pick(
            (
                f"find all {phrase}{where} that are good for repowering",
                f"repowering opportunities for {phrase}{where}",
                f"{phrase}{where} suitable for repowering",
                f"which {phrase}{where} could be repowered?",
                f"repowering candidates: {phrase}{where}",
                f"{phrase}{where} ripe for repowering",
                f"{phrase}{where} to repower",
            )
        )
        if explicit:
            text += render.pick(
                (
                    f" with less than {years} years of FIT left",
                    f" whose FIT ends within {years} years",
                )
            )
        return text, _fields(
            tech,
            place=place,
            low=low,
            high=high,
            query_intent="repowering_opportunities",
            fit_remaining_max_years=float(years_left) if explicit else REPOWERING_MAX_YEARS,
        )
    if roll < 0.7:
        text = render.pick(
            (
                f"acquisition targets among {phrase}{where}",
                f"{phrase}{where} we could acquire",
                f"investment opportunities in {phrase}{where}",
                f"which {phrase}{where} are worth buying?",
                f"{phrase} to acquire{where}",
                f"shortlist {phrase}{where} for acquisition",
            )
        )
        return text, _fields(
            tech, place=place, low=low, high=high, query_intent="acquisition_targets"
        )
    text = render.pick(
        (
            f"{phrase}{where} whose FIT ends within {years} years",
            f"{phrase}{where} with less than {years} years of FIT remaining",
            f"{noun}{where} where the tariff expires in the next {years} years",
            f"{phrase}{where} with under {years} years of tariff left",
            f"which {noun}{where} lose their FIT within {years} years?",
            f"FIT expiring within {years} years for {phrase}{where}",
        )
    )
    if phrase not in text:
        low = high = None  # The phrasing drew no capacity, so the intent has none.
    return text, _fields(
        tech, place=place, low=low, high=high, fit_remaining_max_years=float(years_left)
    )


_BUILDERS: dict[str, Callable[[_Render], tuple[str, Fields]]] = {
    "basic_technology": _basic_technology,
    "location_mapping": _location_mapping,
    "capacity_filtering": _capacity_filtering,
    "combined_filters": _combined_filters,
    "fit_rate_lookups": _fit_rate_lookups,
    "regional_calculations": _regional_calculations,
    "aggregations": _aggregations,
    "comparisons": _comparisons,
    "business_queries": _business_queries,
}


def _typo(rng: random.Random, text: str) -> str:
    # One swapped pair of letters in a longer word: the slips a learned parser should absorb.
    words = text.split(" ")
    candidates = [i for i, word in enumerate(words) if len(word) >= 5 and word.isalpha()]
    if not candidates:
        return text
    index = rng.choice(candidates)
    word = words[index]
    at = rng.randrange(1, len(word) - 2)
    words[index] = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    return " ".join(words)


def _style(rng: random.Random, text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    roll = rng.random()
    if roll < 0.55:
        text = text.lower()  # Most people type in lower case.
    elif roll < 0.85:
        text = text[:1].upper() + text[1:]
    if rng.random() < 0.08:
        text = _typo(rng, text)
    if rng.random() < 0.03:
        text = f"{text.rstrip('?')} please"
    return text


def dedupe_key(text: str) -> str:
    """The form two texts share when they differ only in case, spacing or punctuation."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def example_id(text: str, expected: Mapping[str, Any]) -> str:
    """Stable id of an example: a hash of its text and expected output."""
    payload = f"{text}\x1f{json.dumps(expected, sort_keys=True)}"
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def generate_examples(seed: int = 0, counts: Mapping[str, int] | None = None) -> list[Example]:
    """Generate `{"id", "text", "expected", "category"}` examples, deterministic per seed.

    `counts` maps category to the number of distinct texts wanted (default
    `CATEGORY_COUNTS`). Each `expected` is the compact dict of a validated `ParsedQuery`.
    """
    counts = CATEGORY_COUNTS if counts is None else counts
    unknown = set(counts) - set(_BUILDERS)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; choose from {sorted(_BUILDERS)}")
    rng = random.Random(seed)
    places, weights = _place_pool()
    render = _Render(rng, places, weights)
    seen: set[str] = set()
    examples: list[Example] = []
    for category, wanted in counts.items():
        builder = _BUILDERS[category]
        made = 0
        for _ in range(wanted * 50):
            if made == wanted:
                break
            raw, fields = builder(render)
            text = _style(rng, raw)
            key = dedupe_key(text)
            if key in seen:
                continue
            seen.add(key)
            expected = to_compact_dict(ParsedQuery(**fields))
            examples.append(
                {
                    "id": example_id(text, expected),
                    "text": text,
                    "expected": expected,
                    "category": category,
                }
            )
            made += 1
        if made < wanted:
            raise RuntimeError(f"only {made} distinct {category} examples; add phrasings")
    return examples


def combination_key(example: Example) -> tuple[Any, ...] | None:
    """The slot combination an example tests, or None when it has fewer than two slots."""
    expected = example["expected"]
    technology = expected.get("technology")
    techs = tuple(expected.get("technologies") or ([technology] if technology else []))
    place = expected.get("location")
    capacity = (expected.get("capacity_min_kw"), expected.get("capacity_max_kw"))
    has_capacity = capacity != (None, None)
    if techs and place:
        return ("technology+place", techs, place)
    if techs and has_capacity:
        return ("technology+capacity", techs, capacity)
    if place and has_capacity:
        return ("place+capacity", place, capacity)
    return None


def split_examples(
    examples: list[Example],
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> dict[str, list[Example]]:
    """Split into train/validation/test (80/10/10 by default), holding out combinations.

    Every combination (see the module docstring) goes wholly to one split; validation and
    test are filled first, in a seeded hash order, so the result does not depend on the
    order of `examples`.
    """
    if abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    groups: dict[Any, list[int]] = {}
    for index, example in enumerate(examples):
        key = combination_key(example) or ("single", example["id"])
        groups.setdefault(key, []).append(index)

    def order(key: Any) -> str:
        return hashlib.sha1(f"{seed}:{key!r}".encode()).hexdigest()

    targets = {
        "test": round(fractions[2] * len(examples)),
        "validation": round(fractions[1] * len(examples)),
    }
    chosen: dict[str, list[int]] = {name: [] for name in SPLITS}
    for key in sorted(groups, key=order):
        members = groups[key]
        for name in ("test", "validation"):
            if len(chosen[name]) + len(members) <= targets[name]:
                chosen[name].extend(members)
                break
        else:
            chosen["train"].extend(members)
    return {name: [examples[i] for i in sorted(chosen[name])] for name in SPLITS}
