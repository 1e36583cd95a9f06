"""The rule-based FIT query parser: version 0 of the parser task and the fallback whenever a
learned model's output fails validation.

Keyword and regular-expression rules over a lower-cased copy of the question, with places
resolved by `models.fit.gazetteer`. It handles the phrasings in the FIT plan and their
common variants; typos and unusual word order are left to the learned parser.
"""

from __future__ import annotations

import re

from kaizend.models.fit import gazetteer
from kaizend.models.fit.gazetteer import Place
from kaizend.models.fit.schema import REPOWERING_MAX_YEARS, SIZE_BANDS, ParsedQuery

# Order matters: "water turbine" is hydro and must be claimed before wind takes "turbine".
_TECHNOLOGY_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (technology, re.compile(pattern))
    for technology, pattern in (
        ("Hydro", r"\b(?:micro[- ]?)?hydro(?:[- ]?electric(?:ity)?|[- ]?power)?s?\b"
                  r"|\bwater[- ]?(?:turbines?|power|wheels?|mills?)?\b"
                  r"|\brun[- ]of[- ](?:the[- ])?river\b"),
        ("Anaerobic digestion", r"\banaerobic(?:\s+digest(?:ion|ers?))?\b|\bdigest(?:ion|ers?)\b"
                                r"|\bad\b|\bbio[- ]?gas\b|\bbio[- ]?methane\b"),
        ("Micro CHP", r"\b(?:micro[- ]?)?chps?\b|\bcombined\s+heat(?:\s+(?:and|&)\s+power)?\b"
                      r"|\bco[- ]?generation\b"),
        ("Photovoltaic", r"\bsolar\b|\bpv\b|\bphoto[- ]?voltaics?\b"),
        ("Wind", r"\bwind(?:[- ]?(?:farms?|turbines?|power|energy|mills?|parks?))?\b"
                 r"|\bturbines?\b"),
    )
)  # fmt: skip

_NUMBER = r"(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|\.\d+)"
_UNIT = r"(kwp|kw|kilowatts?(?:\s+peak)?|mwp|mw|megawatts?)(?![a-z])"
_VALUE = re.compile(rf"{_NUMBER}\s*{_UNIT}")
_RANGES = (
    re.compile(rf"\bbetween\s+{_NUMBER}\s*(?:{_UNIT})?\s+(?:and|&|to|-)\s+{_NUMBER}\s*{_UNIT}"),
    re.compile(rf"(?:\bfrom\s+)?{_NUMBER}\s*(?:{_UNIT})?\s*(?:-|to)\s*{_NUMBER}\s*{_UNIT}"),
)
_FILLER = (
    r"(?:\s+(?:a|an|the))?(?:\s+(?:total|declared|installed|rated))?(?:\s+capacity)?(?:\s+of)?"
)
# "no more than" caps a size while "more than" floors it, hence the look-behinds.
_MIN_BEFORE = re.compile(
    r"(?<![a-z])(?:over|above|(?<!no )(?<!not )(?:more|greater|bigger|larger) than|at least|"
    r"(?<!not )exceeding|in excess of|upwards of|minimum|min|no less than|not less than|"
    r"north of|starting at|from|>=?|≥)" + _FILLER + r"\s*$"
)
_MAX_BEFORE = re.compile(
    r"(?<![a-z])(?:under|below|(?<!no )(?<!not )(?:less|smaller|lower) than|up to|upto|"
    r"at most|no more than|not more than|not exceeding|no bigger than|no larger than|"
    r"maximum|max|sub-?|<=?|≤)" + _FILLER + r"\s*$"
)
_MIN_AFTER = re.compile(
    r"^\s*(?:\+|plus\b|or (?:more|above|larger|bigger|greater|over)\b|"
    r"and (?:above|over|up|upwards|bigger|larger)\b)"
)
_MAX_AFTER = re.compile(
    r"^\s*(?:or (?:less|below|smaller|under|lower)|and (?:below|under|smaller|less))\b"
)
_SIZE_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("small", re.compile(r"\b(?:small|tiny)(?:[- ](?:scale|sized?))?\b")),
    ("medium", re.compile(r"\bmedium(?:[- ](?:scale|sized?))?\b|\bmid[- ](?:scale|sized?)\b")),
    ("large", re.compile(r"\b(?:large|big)(?:[- ](?:scale|sized?))?\b|\butility[- ]scale\b")),
)

_FIT_ID = re.compile(
    r"(?:\b(?:fit|installation|site|id|ref|reference)(?:\s*(?:id|no\.?|number|ref|reference))?"
    r"|#)\s*[:#]?\s*(\d{1,9})\b(?!\s*(?:kw|mw|kilo|mega|years?|yrs|%|p\b|pence|sites?|"
    r"installations?))"
)
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "twelve": 12, "fifteen": 15, "twenty": 20,
}  # fmt: skip
_YEARS = re.compile(r"(\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")\s*(?:years?|yrs?)\b")
_EXPIRY_CONTEXT = re.compile(
    r"expir|\bend(?:s|ing)?\b|\bleft\b|remaining|\bruns? out\b|\brun(?:ning)? out\b|\bfinish"
)

_COMPARISON = re.compile(
    r"\bcompar(?:e|ed|es|ing|ison)\b|\bvs\.?(?=\s|$)|\bversus\b|\bagainst\b|"
    r"\bdifference between\b|\bcontrast\b|\bside by side\b|\brelative to\b"
)
_TOTAL_CAPACITY = re.compile(
    r"\btotal\b[^.?]*\bcapacity\b|\bcapacity\b[^.?]*\btotal\b|"
    r"\bcombined (?:installed |total |generating )?capacity\b|"
    r"\bsum of\b|\bcumulative\b|\baggregate\b[^.?]*\bcapacity\b|\bhow much\b[^.?]*\bcapacity\b|"
    r"\bhow many\s+(?:mw|megawatts?|kw|kilowatts?|gw|gigawatts?)\b|\boverall capacity\b|"
    r"\btotal (?:mw|megawatts|kw|kilowatts|output)\b"
)
_COUNT = re.compile(r"\bhow many\b|\bnumber of\b|\bcount\b|\bcount of\b|\btally\b")
_FIT_RATE = re.compile(
    r"\brates?\b|\btariffs?\b(?!\s+(?:left|remaining|ends?|ending|expir\w*|runs?\s+out|"
    r"to run))|p/kwh|pence per kwh|\bpence\b"
)
_EXPIRY_TARIFF = re.compile(r"(?:years?|yrs?)\s+of\s+(?:the\s+)?(?:fit|tariff|subsidy)")
_REVENUE = re.compile(
    r"\brevenues?\b|\bincome\b|\bearn(?:s|ing|ings)?\b|\bpayments?\b|\bpaid\b|\bmoney\b|"
    r"\bprofit\w*\b|£|\bcash ?flow\b"
)
_REGIONAL = re.compile(
    r"\bregional(?:ly)?\b|\bregion[- ]adjusted\b|\bregion[- ]specific\b|"
    r"\blocation[- ]adjusted\b|\bregional factors?\b"
)
_INTENTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("repowering_opportunities", re.compile(r"\bre-?power\w*")),
    ("acquisition_targets", re.compile(
        r"\bacqui(?:re|red|sition|sitions|ring)\b|\bbuy(?:ing|out)?\b|\bpurchas\w*|"
        r"\binvest(?:ment|ments|ing|ors?)?\b|\btake ?over\b"
    )),
)  # fmt: skip


def _normalise(text: str) -> str:
    text = text.lower().replace("–", "-").replace("—", "-").replace("’", "'")
    return re.sub(r"\s+", " ", text).strip()


def _kilowatts(number: str, unit: str | None) -> float:
    value = float(number.replace(",", ""))
    if unit and unit.startswith(("mw", "mega")):
        value *= 1000
    return round(value, 6)


def _blank(text: str, start: int, end: int) -> str:
    # Keep offsets stable so later rules still see the rest of the sentence in place.
    return text[:start] + " " * (end - start) + text[end:]


def find_technologies(text: str) -> list[str]:
    """Technologies named in `text`, in order of first mention."""
    working = _normalise(text)
    hits: list[tuple[int, str]] = []
    for technology, pattern in _TECHNOLOGY_PATTERNS:
        for match in pattern.finditer(working):
            hits.append((match.start(), technology))
            working = _blank(working, match.start(), match.end())
    ordered: list[str] = []
    for _, technology in sorted(hits):
        if technology not in ordered:
            ordered.append(technology)
    return ordered


def find_capacity(text: str) -> tuple[float | None, float | None]:
    """(min kW, max kW) from explicit figures ("over 1.5MW", "100-500kW") or size words."""
    working = _normalise(text)
    low: float | None = None
    high: float | None = None
    for pattern in _RANGES:
        match = pattern.search(working)
        if match:
            first, first_unit, second, second_unit = match.groups()
            low = _kilowatts(first, first_unit or second_unit)
            high = _kilowatts(second, second_unit)
            working = _blank(working, match.start(), match.end())
            break
    for match in _VALUE.finditer(working):
        value = _kilowatts(match.group(1), match.group(2))
        before = working[max(0, match.start() - 40) : match.start()]
        after = working[match.end() : match.end() + 20]
        if _MIN_BEFORE.search(before) or _MIN_AFTER.search(after):
            low = value
        elif _MAX_BEFORE.search(before) or _MAX_AFTER.search(after):
            high = value
        elif low is None and high is None:
            low = high = value  # "500kW turbines": that size exactly.
    if low is None and high is None:
        for size, pattern in _SIZE_WORDS:
            if pattern.search(working):
                low, high = SIZE_BANDS[size]
                break
    if low is not None and high is not None and low > high:
        low, high = high, low
    return low, high


def find_fit_id(text: str) -> str | None:
    """A FIT installation id ("fit id 1585", "FIT 4004", "installation #77"), if any."""
    match = _FIT_ID.search(_normalise(text))
    return match.group(1) if match else None


def find_remaining_years(text: str) -> float | None:
    """Years of tariff left asked for ("FIT ending within 5 years", "under 3 years left")."""
    working = _normalise(text)
    for match in _YEARS.finditer(working):
        window = working[max(0, match.start() - 40) : match.end() + 30]
        if _EXPIRY_CONTEXT.search(window):
            word = match.group(1)
            years = float(_NUMBER_WORDS[word]) if word in _NUMBER_WORDS else float(word)
            return years if years > 0 else None
    return None


def _covers(outer: Place, inner: Place) -> bool:
    patterns = set(outer.postcode_patterns)
    return all(
        pattern in patterns or gazetteer.area_of(pattern) in patterns
        for pattern in inner.postcode_patterns
    )


def choose_place(places: list[Place]) -> Place | None:
    """The place a question is about: the most specific of nested mentions ("Hungerford,
    Berkshire" -> Hungerford), otherwise the first mentioned."""
    for place in places:
        if not any(other != place and _covers(place, other) for other in places):
            return place
    return places[0] if places else None


def parse(text: str) -> ParsedQuery:
    """Parse a question into a `ParsedQuery`; never raises, returns no filters at worst."""
    lowered = _normalise(text)
    fit_id = find_fit_id(lowered)
    if fit_id is not None:
        lowered = _FIT_ID.sub(" ", lowered, count=1)
    technologies = find_technologies(lowered)
    low, high = find_capacity(lowered)
    place = choose_place(gazetteer.find_places(text))
    years = find_remaining_years(lowered)
    intent = next((name for name, pattern in _INTENTS if pattern.search(lowered)), None)
    if intent == "repowering_opportunities" and years is None:
        years = REPOWERING_MAX_YEARS

    fields: dict[str, object] = {
        "capacity_min_kw": low,
        "capacity_max_kw": high,
        "fit_id": fit_id,
        "fit_remaining_max_years": years,
        "query_intent": intent,
        "include_regional": bool(_REGIONAL.search(lowered)),
        "include_revenue": bool(_REVENUE.search(lowered)),
    }
    if place is not None:
        fields["location"] = place.name
        fields["postcode_patterns"] = list(place.postcode_patterns)
    if len(technologies) >= 2:
        fields["technologies"] = technologies
    elif technologies:
        fields["technology"] = technologies[0]

    rate_asked = bool(_FIT_RATE.search(lowered)) and not _EXPIRY_TARIFF.search(lowered)
    if len(technologies) >= 2 and _COMPARISON.search(lowered):
        fields["query_type"] = "comparison"
    elif _TOTAL_CAPACITY.search(lowered):
        fields.update(query_type="aggregation", aggregation="total_capacity")
    elif _COUNT.search(lowered):
        fields.update(query_type="aggregation", aggregation="count")
    elif rate_asked:
        fields["query_type"] = "fit_rate"
    return ParsedQuery(**fields)  # type: ignore[arg-type]
