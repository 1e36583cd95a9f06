from __future__ import annotations

import pytest
from kaizend.models.fit import gazetteer
from kaizend.models.fit.gazetteer import Place, find_places, resolve

ALL_AREAS = (
    "AB AL B BA BB BD BH BL BN BR BS BT CA CB CF CH CM CO CR CT CV CW DA DD DE DG DH DL DN DT "
    "DY E EC EH EN EX FK FY G GL GU HA HD HG HP HR HS HU HX IG IP IV KA KT KW KY L LA LD LE LL "
    "LN LS LU M ME MK ML N NE NG NN NP NR NW OL OX PA PE PH PL PO PR RG RH RM S SA SE SG SK SL "
    "SM SN SO SP SR SS ST SW SY TA TD TF TN TQ TR TS TW UB W WA WC WD WF WN WR WS WV YO ZE"
).split()
YORKSHIRE_CORE = {"YO", "HU", "DN", "HD", "WF", "LS", "BD"}


def _patterns(name: str) -> set[str]:
    place = resolve(name)
    assert place is not None, f"{name!r} did not resolve"
    return set(place.postcode_patterns)


def test_every_uk_postcode_area_is_covered() -> None:
    assert len(ALL_AREAS) == 121
    assert set(gazetteer.postcode_areas()) == set(ALL_AREAS)
    for area in ALL_AREAS:
        assert resolve(area) == Place(area, "area", (area,))
        assert gazetteer.districts(area), f"no districts for {area}"
    post_towns = {place.postcode_patterns for place in gazetteer.all_places()}
    assert all((area,) in post_towns for area in ALL_AREAS), "an area has no post town"


@pytest.mark.parametrize(
    ("town", "area"),
    [("Reading", "RG"), ("Slough", "SL"), ("Leeds", "LS"), ("York", "YO"), ("Hull", "HU"),
     ("Kingston upon Hull", "HU"), ("Lerwick", "ZE"), ("Belfast", "BT"), ("Glasgow", "G")],
)  # fmt: skip
def test_post_towns_resolve_to_their_area(town: str, area: str) -> None:
    assert _patterns(town) == {area}


def test_yorkshire_and_berkshire() -> None:
    yorkshire = _patterns("Yorkshire")
    assert YORKSHIRE_CORE <= yorkshire
    assert yorkshire == YORKSHIRE_CORE | {"S", "HG", "HX"}  # TS is left to the North East.
    assert _patterns("Yorkshire and the Humber") == yorkshire
    assert _patterns("North Yorkshire") <= yorkshire
    assert _patterns("West Yorkshire") == {"BD", "HD", "HX", "LS", "WF"}
    assert resolve("Berkshire") == Place("Berkshire", "county", ("RG", "SL"))


@pytest.mark.parametrize(
    ("abbreviation", "county"),
    [("Berks", "Berkshire"), ("Yorks", "Yorkshire"), ("Lancs", "Lancashire"),
     ("Glos", "Gloucestershire"), ("Hants", "Hampshire"), ("Herts", "Hertfordshire"),
     ("Bucks", "Buckinghamshire"), ("Oxon", "Oxfordshire"), ("Wilts", "Wiltshire"),
     ("Notts", "Nottinghamshire"), ("Leics", "Leicestershire"), ("Northants", "Northamptonshire"),
     ("Cambs", "Cambridgeshire"), ("Staffs", "Staffordshire"), ("Worcs", "Worcestershire"),
     ("Beds", "Bedfordshire"), ("Lincs", "Lincolnshire"), ("Derbys", "Derbyshire"),
     ("Shrops", "Shropshire"), ("Northumb", "Northumberland"), ("N Yorks", "North Yorkshire"),
     ("N. Yorks", "North Yorkshire"), ("W Yorks", "West Yorkshire"), ("IoW", "Isle of Wight"),
     ("Co. Durham", "County Durham")],
)  # fmt: skip
def test_abbreviations(abbreviation: str, county: str) -> None:
    place = resolve(abbreviation)
    assert place is not None and place.name == county


@pytest.mark.parametrize(
    "spelling",
    ["berkshire", "BERKSHIRE", "the Berkshire", "Berkshire county", "Berk shire", "Berkshire!",
     "county of Berkshire"],
)  # fmt: skip
def test_spelling_tolerance(spelling: str) -> None:
    assert resolve(spelling) == resolve("Berkshire")


def test_shire_variants_and_nested_names() -> None:
    assert resolve("Devonshire") == resolve("Devon")
    assert resolve("Kent county") == resolve("Kent")
    durham_city, durham_county = resolve("Durham"), resolve("County Durham")
    assert durham_city is not None and durham_county is not None
    assert (durham_city.kind, durham_county.kind) == ("city", "county")
    assert resolve("Narnia") is None
    assert resolve("UK") is None  # The whole country is no filter.


def test_nations_and_regions() -> None:
    for name in ("England", "Scotland", "Wales", "Northern Ireland"):
        assert resolve(name).kind == "nation"  # type: ignore[union-attr]
    regions = (
        "North East",
        "North West",
        "Yorkshire and the Humber",
        "East Midlands",
        "West Midlands",
        "East of England",
        "London",
        "South East",
        "South West",
    )
    england = _patterns("England")
    union: set[str] = set()
    for name in regions:
        place = resolve(name)
        assert place is not None and place.kind == "region"
        union |= set(place.postcode_patterns)
    assert union == england
    assert {"AB", "EH", "G", "IV", "KW", "ZE"} <= _patterns("Scotland")
    assert not england & _patterns("Scotland")
    assert _patterns("Northern Ireland") == {"BT"}


def test_every_pattern_is_a_real_area_or_district() -> None:
    for place in gazetteer.all_places():
        assert place.postcode_patterns == tuple(sorted(place.postcode_patterns))
        for pattern in place.postcode_patterns:
            area = gazetteer.area_of(pattern)
            assert area in ALL_AREAS, (place.name, pattern)
            assert pattern == area or pattern in gazetteer.districts(area), (place.name, pattern)


def test_postcode_detection() -> None:
    for token in ("RG17", "rg17", "SW1A", "M1", "EC1A", "RG", "RG17 0AB"):
        assert gazetteer.is_postcode(token), token
    for token in ("R", "XX1", "17RG", "PV", "ABC1", "RG17 0A"):
        assert not gazetteer.is_postcode(token), token
    assert gazetteer.is_postcode_district("RG17") and not gazetteer.is_postcode_district("RG")
    assert gazetteer.is_postcode_area("SL") and not gazetteer.is_postcode_area("SL1")
    assert resolve("RG17") == Place("RG17", "district", ("RG17",))


def _names(text: str) -> list[str]:
    return [place.name for place in find_places(text)]


def test_find_places_prefers_the_longest_match() -> None:
    assert _names("wind farms in North Yorkshire") == ["North Yorkshire"]
    assert _names("solar in the east riding of yorkshire") == ["East Riding of Yorkshire"]
    assert _names("hydro in Stoke-on-Trent") == ["Stoke-on-Trent"]
    assert _names("turbines in the Yorkshire & Humber region") == ["Yorkshire and the Humber"]


def test_find_places_respects_word_boundaries_and_common_words() -> None:
    assert _names("wind sites in Kentucky and Windsorville") == []
    assert _names("meter reading for solar panels") == []
    assert _names("turbines in reading") == ["Reading"]
    assert _names("Reading wind farms") == ["Reading"]
    assert _names("show me 100 KW turbines and CO2 savings") == []


def test_find_places_reads_postcodes() -> None:
    assert _names("wind in RG17 and the SL postcode area") == ["RG17", "SL"]
    assert _names("sites near rg17 0ab") == ["RG17"]
    assert _names("solar in YO") == ["YO"]
    assert _names("solar in yo") == []  # Lower-case bare areas are too often words.


def test_region_of() -> None:
    assert gazetteer.region_of("RG17") == "South East"
    assert gazetteer.region_of("SY20") == "Wales"
    assert gazetteer.region_of("SY1") == "West Midlands"
    assert gazetteer.region_of("CH5") == "Wales"
    assert gazetteer.region_of("EH1") == "Scotland"
