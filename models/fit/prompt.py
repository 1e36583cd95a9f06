"""What the model reads and what it writes.

The prompt is one short line around the question. The target comes in two formats:

- ``json``: the canonical compact JSON of `models.fit.schema.to_compact_dict` with minimal
  separators. Readable, but a Yorkshire query costs over 50 generated tokens.
- ``slots`` (the default): a terse slot code that the model writes and a deterministic
  expansion turns back into the schema. On CPU every generated token costs one full pass
  over the weights, so this is where serving latency is won. Postcodes are never generated
  (the gazetteer resolves the place name), nor is the ten-year horizon a repowering question
  implies (`REPOWERING_MAX_YEARS`).

A slot code is a space-separated list of fields in a fixed order::

    W >100 @Berkshire            technology Wind, at least 100 kW, in Berkshire
    !c WP @Yorkshire             compare Wind and Photovoltaic in Yorkshire
    !r #1585                     the FIT rate of installation 1585

Field sigils: ``!`` query type (``r`` fit_rate, ``c`` comparison, ``n`` count, ``k`` total
capacity); technology letters (``W`` Wind, ``P`` Photovoltaic, ``H`` Hydro, ``A`` Anaerobic
digestion, ``M`` Micro CHP; two or more letters mean ``technologies``); ``>`` and ``<`` the
capacity bounds in kW; ``@`` the place; ``#`` the FIT id; ``~`` the remaining-years bound;
``%`` the intent (``rp`` and ``aq`` abbreviate the two known ones); ``+g`` regional and
``+v`` revenue. An empty code means "no filters".
"""

from __future__ import annotations

import json
from functools import cache
from itertools import combinations
from typing import Any, Literal

from kaizend.models.fit import gazetteer, rules
from kaizend.models.fit.schema import (
    REPOWERING_MAX_YEARS,
    TECHNOLOGIES,
    InvalidParse,
    ParsedQuery,
    to_compact_dict,
    validate_json,
    validate_output,
)
from kaizend.models.llm.codec import json_complete
from kaizend.models.llm.constrained import Constraint

TargetFormat = Literal["slots", "json"]
TARGET_FORMATS: tuple[str, ...] = ("slots", "json")

_TECH_CODES: dict[str, str] = {
    "Wind": "W",
    "Photovoltaic": "P",
    "Hydro": "H",
    "Anaerobic digestion": "A",
    "Micro CHP": "M",
}
_CODE_TECHS = {code: name for name, code in _TECH_CODES.items()}
_TYPE_CODES: dict[tuple[str, str | None], str] = {
    ("fit_rate", None): "r",
    ("comparison", None): "c",
    ("aggregation", "count"): "n",
    ("aggregation", "total_capacity"): "k",
}
_CODE_TYPES = {code: key for key, code in _TYPE_CODES.items()}
_INTENT_CODES: dict[str, str] = {
    "repowering_opportunities": "rp",
    "acquisition_targets": "aq",
}
_CODE_INTENTS = {code: name for name, code in _INTENT_CODES.items()}


def build_prompt(text: str, hint: str | None = None) -> str:
    """The prompt for one question; the target follows it directly.

    Kept to a few tokens: the fine-tuned model needs no instructions, and every prompt
    token is prefill time at serving. `hint` (see `rule_hint`) goes on its own line.
    """
    question = " ".join(text.split())
    if hint is None:
        return f"Q: {question}\nA:"
    return f"Q: {question}\nR:{hint}\nA:"


def rule_hint(text: str, fmt: TargetFormat = "slots") -> str:
    """The rule parser's answer in the target format, to show the model in the prompt.

    The model then mostly copies it and learns to correct what the rules get wrong (typos,
    spelled-out numbers); at serving the copy doubles as a draft that prompt-lookup
    decoding verifies several tokens at a time.
    """
    return encode_target(rules.parse(text), fmt)


def make_prompt(text: str, fmt: TargetFormat = "slots", *, with_hint: bool = False) -> str:
    """`build_prompt` with the rule hint computed here when `with_hint`."""
    return build_prompt(text, rule_hint(text, fmt) if with_hint else None)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def encode_slots(expected: ParsedQuery | dict[str, Any]) -> str:
    """The slot code of a parse (see the module docstring); `decode_slots` inverts it."""
    parsed = expected if isinstance(expected, ParsedQuery) else validate_output(expected)
    compact = to_compact_dict(parsed)
    fields: list[str] = []
    if parsed.query_type != "search":
        fields.append("!" + _TYPE_CODES[(parsed.query_type, parsed.aggregation)])
    techs = parsed.technologies or ([parsed.technology] if parsed.technology else [])
    if techs:
        fields.append("".join(_TECH_CODES[name] for name in techs))
    if "capacity_min_kw" in compact:
        fields.append(">" + _number(compact["capacity_min_kw"]))
    if "capacity_max_kw" in compact:
        fields.append("<" + _number(compact["capacity_max_kw"]))
    if parsed.location is not None:
        fields.append("@" + parsed.location)
    elif parsed.postcode_patterns:
        raise InvalidParse(
            [
                "postcode_patterns: set without a location; the slot code names places only "
                "(train this example with the json target format)"
            ],
            compact,
        )
    if parsed.fit_id is not None:
        fields.append("#" + parsed.fit_id)
    years = parsed.fit_remaining_max_years
    implied = REPOWERING_MAX_YEARS if parsed.query_intent == "repowering_opportunities" else None
    if years is not None and years != implied:
        fields.append("~" + _number(years))
    if parsed.query_intent is not None:
        fields.append("%" + _INTENT_CODES.get(parsed.query_intent, parsed.query_intent))
    if parsed.include_regional:
        fields.append("+g")
    if parsed.include_revenue:
        fields.append("+v")
    return " ".join(fields)


def _parse_number(raw: str, field: str) -> float:
    try:
        return float(raw)
    except ValueError as err:
        raise InvalidParse([f"{field}: not a number: {raw!r}"], raw) from err


def decode_slots(code: str) -> ParsedQuery:
    """Expand a slot code into a validated `ParsedQuery`.

    Raises `InvalidParse` for an unknown sigil, an unknown place, a malformed number or an
    expansion that fails the schema, so the caller can fall back to the rule parser.
    """
    fields: dict[str, Any] = {}
    # A place name may contain spaces ("East Riding of Yorkshire"): it runs up to the next
    # token that starts with a sigil.
    tokens = code.strip().split()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        sigil, value = token[0], token[1:]
        if sigil == "@":
            words = [value]
            while index < len(tokens) and tokens[index][0] not in "!><@#~%+":
                words.append(tokens[index])
                index += 1
            name = " ".join(words)
            place = gazetteer.resolve(name)
            if place is None:
                raise InvalidParse([f"location: {name!r} is not in the gazetteer"], code)
            fields["location"] = place.name
            fields["postcode_patterns"] = list(place.postcode_patterns)
        elif sigil == "!":
            if value not in _CODE_TYPES:
                raise InvalidParse([f"query_type: unknown code {value!r}"], code)
            fields["query_type"], aggregation = _CODE_TYPES[value]
            if aggregation is not None:
                fields["aggregation"] = aggregation
        elif sigil == ">":
            fields["capacity_min_kw"] = _parse_number(value, "capacity_min_kw")
        elif sigil == "<":
            fields["capacity_max_kw"] = _parse_number(value, "capacity_max_kw")
        elif sigil == "#":
            fields["fit_id"] = value
        elif sigil == "~":
            fields["fit_remaining_max_years"] = _parse_number(value, "fit_remaining_max_years")
        elif sigil == "%":
            fields["query_intent"] = _CODE_INTENTS.get(value, value)
        elif token == "+g":
            fields["include_regional"] = True
        elif token == "+v":
            fields["include_revenue"] = True
        elif token and all(letter in _CODE_TECHS for letter in token):
            names = [_CODE_TECHS[letter] for letter in token]
            if len(names) == 1:
                fields["technology"] = names[0]
            else:
                fields["technologies"] = sorted(set(names), key=TECHNOLOGIES.index)
        else:
            raise InvalidParse([f"unknown slot {token!r}"], code)
    if (
        fields.get("query_intent") == "repowering_opportunities"
        and "fit_remaining_max_years" not in fields
    ):
        fields["fit_remaining_max_years"] = REPOWERING_MAX_YEARS
    return validate_output(fields)


def encode_target(expected: ParsedQuery | dict[str, Any], fmt: TargetFormat = "slots") -> str:
    """The text the model is trained to write after the prompt (without the end token)."""
    if fmt == "slots":
        return " " + encode_slots(expected)
    parsed = expected if isinstance(expected, ParsedQuery) else validate_output(expected)
    return " " + json.dumps(to_compact_dict(parsed), separators=(",", ":"))


def decode_target(raw: str, fmt: TargetFormat = "slots") -> ParsedQuery:
    """Turn the model's generated text into a validated parse; raises `InvalidParse`."""
    if fmt == "slots":
        return decode_slots(raw.split("\n", 1)[0])
    return validate_json(raw)


def is_complete(raw: str, fmt: TargetFormat) -> bool:
    """Whether generation can stop: a line ends the slot code, a closing brace the JSON.

    Lets the decoder stop without waiting for the end token, one pass earlier.
    """
    return "\n" in raw if fmt == "slots" else json_complete(raw)


# Bounds of the constrained answers: wider than anything the schema's users write (the
# generated data's largest number has 5 digits), and finite, so that even a model that
# babbles digits reaches the end of its answer.
_MAX_DIGITS = 9
_MAX_DECIMALS = 6
_MAX_INTENT = 48
_MAX_POSTCODES = 128


def _place_names() -> list[str]:
    # Longest first only for readability of the grammar; the lexer matches the union.
    return sorted({place.name for place in gazetteer.all_places()}, key=lambda n: (-len(n), n))


def _place_words(name: str) -> str:
    # One literal per word, the space leading each word after the first: the lexer never
    # backtracks, so "South West" must not be one lexeme that "South West London" extends
    # (the " +g" after it would be read as the start of " London" and refused).
    first, *rest = name.split(" ")
    return " ".join(json.dumps(word) for word in [first, *(" " + w for w in rest)])


def _postcode_place_pattern() -> str:
    # A location may also be a postcode area or district the gazetteer resolves ("HA1").
    areas = "|".join(sorted(gazetteer.postcode_areas(), key=lambda a: (-len(a), a)))
    return f"({areas})([0-9][A-Z0-9]?)?"


@cache
def slot_grammar() -> str:
    """The Lark grammar (llguidance's dialect) of every slot code `decode_slots` accepts as
    the training targets write it: the leading space, fields in `encode_slots` order, each
    at most once, technology letters in canonical order without repeats, two or more after
    ``!c``, places the gazetteer resolves (names, postcode areas and districts), bounded
    numbers and a positive ``~`` horizon.

    What it cannot say (a lower capacity bound above the upper one) is left to
    `decode_slots`.
    """
    codes = "".join(_TECH_CODES[name] for name in TECHNOLOGIES)
    sets = ["".join(c) for size in range(1, 6) for c in combinations(codes, size)]
    many = [letters for letters in sets if len(letters) >= 2]
    other_types = [code for code in _CODE_TYPES if code != "c"]
    number = rf"/[0-9]{{1,{_MAX_DIGITS}}}(\.[0-9]{{1,{_MAX_DECIMALS}}})?/"
    positive = (
        rf"/([1-9][0-9]{{0,{_MAX_DIGITS - 1}}}(\.[0-9]{{1,{_MAX_DECIMALS}}})?)"
        rf"|(0\.[0-9]{{0,{_MAX_DECIMALS - 1}}}[1-9])/"
    )
    intents = f"/[a-z][a-z0-9_]{{0,{_MAX_INTENT - 1}}}/"
    alternatives = " | ".join
    return "\n".join(
        [
            'start: " " | compare | other',
            'compare: " !c " TECHS_MANY rest',
            f'other: (" !" ({alternatives(json.dumps(c) for c in other_types)}))? '
            '(" " TECHS)? rest',
            'rest: (" >" NUMBER)? (" <" NUMBER)? (" @" place)? (" #" FIT_ID)? '
            '(" ~" POSITIVE)? (" %" INTENT)? " +g"? " +v"?',
            f"TECHS: {alternatives(json.dumps(letters) for letters in sets)}",
            f"TECHS_MANY: {alternatives(json.dumps(letters) for letters in many)}",
            f"place: {alternatives(_place_words(name) for name in _place_names())}"
            f" | /{_postcode_place_pattern()}/",
            f"NUMBER: {number}",
            f"POSITIVE: {positive}",
            f"FIT_ID: /[0-9]{{1,{_MAX_DIGITS}}}/",
            f"INTENT: {intents}",
            "",
        ]
    )


@cache
def target_json_schema() -> dict[str, Any]:
    """The JSON Schema of the compact JSON target (`to_compact_dict`): the output schema's
    fields in their order, without nulls, places the gazetteer resolves, bounded strings.

    The output schema's rules between fields are written as alternatives (``anyOf``): an
    aggregation exactly with query_type aggregation, a comparison with two or more
    technologies, ``technology`` or ``technologies`` but not both, technologies in
    canonical order without repeats. Only "capacity_min_kw <= capacity_max_kw" is beyond a
    JSON Schema and left to `validate_output`.
    """
    number = {"type": "number", "minimum": 0}
    ordered = [list(c) for size in range(2, 6) for c in combinations(TECHNOLOGIES, size)]
    fields: dict[str, Any] = {
        "query_type": None,  # per alternative
        "aggregation": {"enum": ["count", "total_capacity"]},
        "technology": {"enum": list(TECHNOLOGIES)},
        "technologies": {"enum": ordered},
        "capacity_min_kw": number,
        "capacity_max_kw": number,
        "location": {
            "anyOf": [
                {"enum": _place_names()},
                {"type": "string", "pattern": f"^{_postcode_place_pattern()}$"},
            ]
        },
        "postcode_patterns": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^[A-Z]{1,2}([0-9][A-Z0-9]?)?$"},
            "minItems": 1,
            "maxItems": _MAX_POSTCODES,
        },
        "fit_id": {"type": "string", "pattern": rf"^[0-9]{{1,{_MAX_DIGITS}}}$"},
        "fit_remaining_max_years": {"type": "number", "exclusiveMinimum": 0},
        "query_intent": {
            "type": "string",
            "pattern": rf"^[a-z][a-z0-9_]{{0,{_MAX_INTENT - 1}}}$",
        },
        "include_regional": {"type": "boolean"},
        "include_revenue": {"type": "boolean"},
    }
    assert list(fields) == list(ParsedQuery.model_fields)  # one order: the target's

    def alternative(query_types: list[str], required: list[str], absent: set[str]) -> dict:
        properties = {
            name: {"enum": query_types} if name == "query_type" else schema
            for name, schema in fields.items()
            if name not in absent
        }
        return {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    alternatives = [alternative(["comparison"], ["query_type", "technologies"],
                                {"aggregation", "technology"})]  # fmt: skip
    for query_types, required in ((["search", "fit_rate"], []), (["aggregation"], ["query_type",
                                  "aggregation"])):  # fmt: skip
        absent = set() if required else {"aggregation"}
        for technologies in ("technology", "technologies"):
            alternatives.append(alternative(query_types, required, absent | {technologies}))
    return {"anyOf": alternatives}


def target_constraint(fmt: TargetFormat) -> Constraint:
    """What constrained decoding holds a model's answer in `fmt` to (see
    `models.llm.constrained`): the slot grammar, or the JSON target's schema after the
    leading space every target starts with."""
    if fmt == "slots":
        return Constraint.lark(slot_grammar())
    return Constraint.json_schema(target_json_schema(), prefix=" ")


MAX_NEW_TOKENS: dict[str, int] = {"slots": 40, "json": 160}
"""Tokens a model may generate per answer, per target format: a slot code is a few tokens,
a compact JSON parse a few dozen."""


class FitCodec:
    """The FIT parser's `models.llm.codec.Codec`: the slot code or the compact JSON, the
    rule parser's answer shown in the prompt (`with_hint`) and answering when the model's
    answer is invalid."""

    def __init__(self, target_format: TargetFormat = "slots", *, with_hint: bool = True) -> None:
        if target_format not in TARGET_FORMATS:
            raise ValueError(f"target format must be one of {TARGET_FORMATS}: {target_format!r}")
        self.target_format: TargetFormat = target_format
        self.with_hint = with_hint
        self.drafts = with_hint
        self.max_new_tokens = MAX_NEW_TOKENS[target_format]

    def prompt(self, text: str) -> str:
        return make_prompt(text, self.target_format, with_hint=self.with_hint)

    def draft(self, text: str) -> str | None:
        return rule_hint(text, self.target_format) if self.with_hint else None

    def encode(self, output: Any) -> str:
        return encode_target(output, self.target_format)

    def decode(self, raw: str) -> dict[str, Any]:
        return to_compact_dict(decode_target(raw, self.target_format))

    def canonical(self, output: Any) -> dict[str, Any]:
        if isinstance(output, dict):  # `kaizend predict` may record the fallback flag in it
            output = {k: v for k, v in output.items() if k != "fallback_used"}
        return to_compact_dict(
            output if isinstance(output, ParsedQuery) else validate_output(output)
        )

    def is_complete(self, raw: str) -> bool:
        return is_complete(raw, self.target_format)

    def constraint(self) -> Constraint:
        return target_constraint(self.target_format)

    def json_schema(self) -> dict[str, Any] | None:
        return target_json_schema() if self.target_format == "json" else None

    def fallback(self, text: str) -> dict[str, Any]:
        return to_compact_dict(rules.parse(text))

    def describe(self) -> dict[str, Any]:
        return {"codec": "fit", "target_format": self.target_format, "rule_hint": self.with_hint}
