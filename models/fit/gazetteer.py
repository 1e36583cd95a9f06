"""Deterministic place -> postcode resolution for UK place names, abbreviations and postcodes.

`resolve("Berks")` gives Berkshire with areas RG and SL; `find_places(text)` spots place
mentions in a question. The data and the judgement calls behind it live in
`models.fit.gazetteer_data`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

from kaizend.models.fit import gazetteer_data as data

PlaceKind = Literal["area", "district", "town", "city", "county", "region", "nation"]

# Regions and nations that partition the UK, in the order `region_of` prefers them.
UK_REGIONS: tuple[str, ...] = (
    "North East", "North West", "Yorkshire and the Humber", "East Midlands", "West Midlands",
    "East of England", "London", "South East", "South West", "Wales", "Scotland",
    "Northern Ireland",
)  # fmt: skip

# SY is listed under both the West Midlands and Wales; its western districts are Welsh,
# and Berwick (TD15) is English although TD is a Scottish area.
_REGION_OVERRIDES: dict[str, str] = {
    **{f"SY{number}": "Wales" for number in range(15, 26)},
    "TD15": "North East",
}

_DISTRICT = re.compile(r"^([A-Z]{1,2})([0-9][A-Z0-9]?)$")
_FULL_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)\s*[0-9][A-Z]{2}$")
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")
# Real districts that, in a question about energy, are far more likely to mean something else.
_NOT_DISTRICTS = frozenset({"CO2", "B2B", "B2C"})
# Two-letter areas that are also units or compass points; bare, they need a "postcode" cue.
_NOT_BARE_AREAS = frozenset({"KW", "CO", "ME", "SO", "ST", "NE", "NW", "SE", "SW"})
_POSTCODE_CUES = frozenset({"postcode", "postcodes", "area", "areas", "district", "districts"})
_LOCATIVES = frozenset({
    "in", "near", "around", "across", "within", "at", "from", "throughout", "outside", "of",
    "to", "by", "about",
})  # fmt: skip


@dataclass(frozen=True)
class Place:
    """A resolved place: its canonical name, what kind of place it is, and its postcodes.

    `postcode_patterns` is sorted; each entry is an area ("RG") or a district ("RG17").
    `aliases` are other spellings a user might type (not used for equality).
    """

    name: str
    kind: PlaceKind
    postcode_patterns: tuple[str, ...]
    aliases: tuple[str, ...] = field(default=(), compare=False, repr=False)


def _key(text: str) -> str:
    """Normalise a place name for lookup: case, accents, punctuation, a leading "the"."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = text.lower().replace("&", " and ").replace("'", "")
    text = re.sub(r"[^a-z0-9]+", " ", text).strip()
    return text[4:] if text.startswith("the ") else text


def _expand(spec: str, specs: dict[str, str], seen: tuple[str, ...] = ()) -> set[str]:
    # "@Name" entries are unions of other places (England is its nine regions).
    if "@" not in spec:
        return set(spec.split())
    patterns: set[str] = set()
    for name in (part.strip() for part in spec.split("@") if part.strip()):
        if name not in specs or name in seen:
            raise ValueError(f"gazetteer union refers to unknown or cyclic place {name!r}")
        patterns |= _expand(specs[name], specs, (*seen, name))
    return patterns


@dataclass(frozen=True)
class _Index:
    by_key: dict[str, Place]
    places: tuple[Place, ...]
    longest_alias: int


@cache
def _index() -> _Index:
    places: list[Place] = []
    for code, town in data.AREAS.items():
        kind: PlaceKind = (
            "area" if code in data.LONDON_AREAS else "city" if town in data.CITIES else "town"
        )
        places.append(Place(town, kind, (code,), data.AREA_TOWN_ALIASES.get(town, ())))
    specs = {name: spec for name, _, spec, _ in data.PLACES}
    for name, kind, spec, aliases in data.PLACES:
        patterns = tuple(sorted(_expand(spec, specs)))
        places.append(Place(name, kind, patterns, aliases))  # type: ignore[arg-type]

    by_key: dict[str, Place] = {}
    for place in places:
        for surface in (place.name, *place.aliases):
            for key in _key_variants(_key(surface)):
                existing = by_key.get(key)
                if existing is not None and existing.name != place.name:
                    raise ValueError(
                        f"gazetteer key {key!r} names both {existing.name!r} and {place.name!r}"
                    )
                by_key[key] = place
    longest = max(len(key.split()) for key in by_key)
    return _Index(by_key, tuple(places), longest)


def _key_variants(key: str) -> tuple[str, ...]:
    # "Berkshire" is also typed "berk shire"; both must land on the same place.
    if key.endswith("shire") and len(key) > 5 and not key.endswith(" shire"):
        return (key, f"{key[:-5]} shire")
    return (key,)


def all_places() -> tuple[Place, ...]:
    """Every named place (towns, cities, counties, regions, nations), areas' post towns first."""
    return _index().places


def postcode_areas() -> tuple[str, ...]:
    """All UK postcode areas, alphabetically."""
    return tuple(sorted(data.AREAS))


def districts(area: str) -> tuple[str, ...]:
    """Real-looking districts of `area` (e.g. RG1..RG45), for synthetic data."""
    area = area.upper()
    if area not in data.AREAS:
        raise KeyError(f"unknown postcode area {area!r}; see postcode_areas()")
    numbered = tuple(
        f"{area}{number}"
        for low, high in data.DISTRICT_RANGES.get(area, ())
        for number in range(low, high + 1)
    )
    return data.LETTERED_DISTRICTS.get(area, ()) + numbered


def area_of(pattern: str) -> str:
    """The postcode area of an area or district: "RG17" -> "RG", "M1" -> "M"."""
    match = re.match(r"[A-Za-z]{1,2}", pattern.strip())
    if match is None:
        raise ValueError(f"{pattern!r} is not a postcode area or district")
    return match.group(0).upper()


def is_postcode_area(token: str) -> bool:
    """True for a known area code such as "RG", "M" or "ZE" (any case)."""
    return token.strip().upper() in data.AREAS


def is_postcode_district(token: str) -> bool:
    """True for a district of a known area: "RG17", "SW1A", "M1" (any case)."""
    token = token.strip().upper()
    match = _DISTRICT.match(token)
    return bool(match) and match.group(1) in data.AREAS


def is_postcode(token: str) -> bool:
    """True for a postcode area, a district, or a full postcode ("RG17 0AB")."""
    token = token.strip().upper()
    full = _FULL_POSTCODE.match(token)
    return is_postcode_area(token) or is_postcode_district(full.group(1) if full else token)


def _postcode_place(token: str) -> Place | None:
    token = token.strip().upper()
    full = _FULL_POSTCODE.match(token)
    if full:
        token = full.group(1)
    if is_postcode_district(token):
        return Place(token, "district", (token,))
    if is_postcode_area(token):
        return Place(token, "area", (token,))
    return None


def resolve(name: str) -> Place | None:
    """Look up a place name, abbreviation or postcode; None when it is not a UK place.

    Tolerates case, punctuation, a leading "the", "county"/"county of", a trailing
    "county" and "shire" spelling variants ("Devonshire", "Berk shire").
    """
    by_key = _index().by_key
    key = _key(name)
    bases = [key]
    for prefix in ("county of ", "county "):
        if key.startswith(prefix):
            bases.append(key[len(prefix) :])
    if key.endswith(" county"):
        bases.append(key[: -len(" county")])
    for base in bases:
        compact = base.replace(" shire", "shire")
        candidates = [base, compact]
        if compact.endswith("shire"):
            candidates.append(compact[:-5].strip())
        else:
            candidates.append(f"{compact}shire")
        for candidate in candidates:
            if candidate in by_key:
                return by_key[candidate]
    return _postcode_place(name)


def find_places(text: str) -> list[Place]:
    """Place mentions in free text, in order of appearance, each place once.

    Longest match wins ("North Yorkshire" before "Yorkshire"); matches respect word
    boundaries. Districts ("RG17") are always recognised; bare areas ("RG") only in upper
    case or next to the word "postcode"/"area", because "me", "so" and "kw" are words too.
    Names that are also common words ("reading", "bath") need a capital or a preposition.
    """
    index = _index()
    prepared = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    tokens = [match.group(0) for match in _TOKEN.finditer(prepared.replace("&", " and "))]
    keys = [_key(token) for token in tokens]
    found: list[Place] = []
    position = 0
    while position < len(tokens):
        place, width = _match_at(index, tokens, keys, position)
        if place is not None and place not in found:
            found.append(place)
        position += width
    return found


def _match_at(
    index: _Index, tokens: list[str], keys: list[str], position: int
) -> tuple[Place | None, int]:
    previous = keys[position - 1] if position > 0 else ""
    for width in range(min(index.longest_alias, len(tokens) - position), 0, -1):
        key = " ".join(keys[position : position + width])
        place = index.by_key.get(key)
        if place is None:
            continue
        if key in data.AMBIGUOUS_NAMES and not (
            tokens[position][:1].isupper() or previous in _LOCATIVES
        ):
            continue
        return place, width
    token = tokens[position]
    upper = token.upper()
    if any(ch.isdigit() for ch in token):
        district = is_postcode_district(upper) and upper not in _NOT_DISTRICTS
        return (_postcode_place(upper) if district else None), 1
    following = keys[position + 1] if position + 1 < len(keys) else ""
    cued = previous in _POSTCODE_CUES or following in _POSTCODE_CUES
    shouting = token.isupper() and len(token) == 2 and upper not in _NOT_BARE_AREAS
    if is_postcode_area(upper) and (cued or shouting):
        return _postcode_place(upper), 1
    return None, 1


def region_of(pattern: str) -> str:
    """The English region or nation a district or area belongs to (first in UK_REGIONS)."""
    pattern = pattern.strip().upper()
    if pattern in _REGION_OVERRIDES:
        return _REGION_OVERRIDES[pattern]
    by_key = _index().by_key
    area = area_of(pattern)
    area_match: str | None = None
    for region in UK_REGIONS:
        patterns = by_key[_key(region)].postcode_patterns
        if pattern in patterns:
            return region
        if area_match is None and area in patterns:
            area_match = region
    if area_match is None:
        raise KeyError(f"{pattern!r} is in no UK region; is it a real postcode?")
    return area_match
