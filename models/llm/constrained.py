"""Schema-constrained decoding: answers that are valid for a JSON Schema or a grammar by
construction.

A `Constraint` names the language an answer must belong to: a JSON Schema (a dict, a JSON
string or a ``.json`` file), a Lark grammar or a regular expression, optionally after a fixed
prefix (fine-tuning targets often start with a space). `compile_constraint` turns it into a
`CompiledConstraint` for one tokenizer, cached per (tokenizer, constraint); its `matcher()` is
what one request's decoding loop uses: the allowed-token mask of the next position, the
greedy choice among allowed tokens, accepting tokens, the longest valid prefix of a draft
(speculative or prompt-lookup decoding), whether the answer is complete, reset.

The grammar engine is llguidance (Microsoft's Rust library behind Guidance, also used by
vLLM, SGLang and llama.cpp): no Python dependencies, a token mask in tens of microseconds
computed lazily as the parse advances, and `validate_tokens` to check a whole draft at once.
Nothing here knows what a task's answers mean: the schema or grammar comes from the caller.

Greedy decoding under a constraint picks the highest-scoring *allowed* token. When the
model's own choice is allowed (the usual case for a fine-tuned model) that is the same token,
and checking it costs one `validate_tokens` call; the full mask is only computed when the
model's choice is refused.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kaizend.core.errors import KaizendError

ConstraintKind = Literal["json_schema", "lark", "regex"]

INSTALL_HINT = "pip install llguidance==1.9.1 (see pyproject.toml)"


class ConstraintError(KaizendError, ValueError):
    """A schema or grammar that cannot constrain decoding; `detail` says why."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"invalid {kind} constraint: {detail}")
        self.kind = kind
        self.detail = detail


class ConstraintViolation(KaizendError, ValueError):
    """A token the constraint does not allow was forced into a matcher."""

    def __init__(self, token: int, detail: str) -> None:
        super().__init__(f"token {token} is not allowed here: {detail}")
        self.token = token


def _lark_literal(text: str) -> str:
    # A JSON string literal is also a valid Lark string literal (same escapes).
    return json.dumps(text)


@dataclass(frozen=True)
class Constraint:
    """The language answers must belong to. Build it with `json_schema`, `lark` or `regex`.

    `source` is the schema (as JSON text), the grammar or the pattern; `prefix` is literal
    text every answer starts with (ignored for Lark, whose grammar says it all).
    Hashable, so compiled matchers can be cached per constraint.
    """

    kind: ConstraintKind
    source: str
    prefix: str = ""

    @classmethod
    def json_schema(cls, schema: Mapping[str, Any] | str | Path, *, prefix: str = "") -> Constraint:
        """Answers are one compact JSON value valid for `schema` (no whitespace between
        tokens, properties in the schema's order).

        `schema` is a dict, a JSON string or the path of a ``.json`` file. Compact output
        keeps answers short and stops a weak model from padding with endless whitespace.
        """
        if isinstance(schema, Path) or (
            isinstance(schema, str) and not schema.lstrip().startswith(("{", "["))
        ):
            path = Path(schema)
            try:
                schema = json.loads(path.read_text())
            except OSError as err:
                raise ConstraintError("json_schema", f"cannot read {path}: {err}") from err
            except json.JSONDecodeError as err:
                raise ConstraintError("json_schema", f"{path} is not JSON: {err}") from err
        elif isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as err:
                raise ConstraintError("json_schema", f"not JSON: {err}") from err
        if not isinstance(schema, Mapping):
            raise ConstraintError(
                "json_schema", f"a JSON Schema is an object, got {type(schema).__name__}"
            )
        return cls("json_schema", json.dumps(schema, ensure_ascii=False), prefix)

    @classmethod
    def lark(cls, grammar: str) -> Constraint:
        """Answers match a Lark grammar (llguidance's dialect: ``start`` is the top rule;
        ``%json {...}`` embeds a JSON Schema)."""
        return cls("lark", grammar)

    @classmethod
    def regex(cls, pattern: str, *, prefix: str = "") -> Constraint:
        """Answers match a regular expression (Rust ``regex`` syntax, anchored at both ends)."""
        return cls("regex", pattern, prefix)

    def grammar(self) -> str:
        """The llguidance grammar definition of this constraint."""
        import llguidance

        if self.kind == "lark":
            return llguidance.LLMatcher.grammar_from_lark(self.source)
        if self.kind == "json_schema":
            schema = json.loads(self.source)
            options = dict(schema.get("x-guidance") or {})
            options.setdefault("whitespace_flexible", False)
            body = "%json " + json.dumps({**schema, "x-guidance": options}, ensure_ascii=False)
        else:
            # A regex literal in Lark: slashes inside the pattern need escaping.
            body = "/" + self.source.replace("/", "\\/") + "/"
        head = f"{_lark_literal(self.prefix)} " if self.prefix else ""
        return llguidance.LLMatcher.grammar_from_lark(f"start: {head}answer\nanswer: {body}\n")


class CompiledConstraint:
    """A constraint compiled for one tokenizer; hands out one `Matcher` per request.

    Safe to share between threads: matchers are independent, the tokenizer data is
    read-only.
    """

    def __init__(self, constraint: Constraint, lltokenizer: Any, eos_token_id: int) -> None:
        import llguidance

        self.constraint = constraint
        self.grammar = constraint.grammar()
        self._lltokenizer = lltokenizer
        self.eos_token_id = eos_token_id
        self.vocab_size: int = lltokenizer.vocab_size
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
            self.grammar, lltokenizer
        )
        if is_error or messages:
            # Warnings too: an unsupported JSON Schema keyword is reported as a warning and
            # then ignored, which would let through answers the schema forbids.
            raise ConstraintError(constraint.kind, "; ".join(messages))
        # Building a matcher parses the grammar (25 ms for a few hundred place names);
        # copying a pristine one takes about a microsecond.
        self._template = llguidance.LLMatcher(lltokenizer, self.grammar, log_level=0)
        if self._template.is_error():
            raise ConstraintError(constraint.kind, self._template.get_error())
        self._lock = threading.Lock()

    def matcher(self) -> Matcher:
        """A fresh matcher at the start of an answer."""
        with self._lock:
            inner = self._template.deep_copy()
        return Matcher(inner, self.vocab_size, self.eos_token_id)

    def accepts(self, tokens: Sequence[int]) -> bool:
        """Whether `tokens` (then the end token) form a complete valid answer."""
        matcher = self.matcher()
        if matcher.valid_prefix(tokens) < len(tokens):
            return False
        matcher.accept_tokens(tokens)
        return matcher.complete

    def accepts_text(self, text: str, tokenizer: Any) -> bool:
        """`accepts` for a text, tokenized as `tokenizer` would (no special tokens)."""
        return self.accepts(tokenizer(text, add_special_tokens=False).input_ids)


class Matcher:
    """The state of one answer under a constraint; not shared between requests."""

    def __init__(self, inner: Any, vocab_size: int, eos_token_id: int) -> None:
        self._inner = inner
        self.vocab_size = vocab_size
        self.eos_token_id = eos_token_id
        self.masks_computed = 0
        """How often the full mask was needed (the model's own choice was refused)."""
        self.consumed = 0
        """Tokens accepted so far."""
        self._complete_points: list[int] = [0] if inner.is_accepting() else []

    def allowed(self) -> Any:
        """The allowed tokens of the next position: a bool tensor over the vocabulary
        (the end token is allowed exactly when the answer is complete)."""
        import numpy as np
        import torch

        self.masks_computed += 1
        packed = np.frombuffer(self._inner.compute_bitmask(), np.uint8)
        bits = np.unpackbits(packed, bitorder="little")
        return torch.from_numpy(bits[: self.vocab_size].astype(bool))

    def choose(self, logits: Any, argmax: int | None = None) -> int:
        """The greedy choice among allowed tokens for a 1-d tensor of next-token logits.

        The model's own argmax (pass it as `argmax` when already known) when it is allowed,
        at the cost of one cheap check; else the best allowed token. Logits past the
        tokenizer's vocabulary (padding rows) are never allowed.
        """
        token = int(logits.argmax()) if argmax is None else argmax
        if token < self.vocab_size and self.valid_prefix([token]) == 1:
            return token
        allowed = self.allowed()
        if not bool(allowed.any()):
            raise ConstraintViolation(token, self._inner.get_error() or "no token is allowed")
        scores = logits[: self.vocab_size].masked_fill(~allowed[: logits.shape[-1]], float("-inf"))
        return int(scores.argmax())

    def valid_prefix(self, tokens: Sequence[int]) -> int:
        """How many of `tokens` (a draft) could be accepted in order from here; the state
        does not change."""
        if not tokens:
            return 0
        if self._inner.is_stopped():
            # llguidance validates nothing once stopped, though its mask allows the end.
            return int(tokens[0] == self.eos_token_id and not self._inner.is_error())
        return int(self._inner.validate_tokens(list(tokens)))

    def accept(self, token: int) -> None:
        """Advance by one token; `ConstraintViolation` if refused, and the matcher is
        broken for good (check drafts with `valid_prefix` first)."""
        if not self._inner.consume_token(int(token)):
            raise ConstraintViolation(token, self._inner.get_error())
        self.consumed += 1
        if self._inner.is_accepting():
            self._complete_points.append(self.consumed)

    def accept_tokens(self, tokens: Sequence[int]) -> None:
        """Advance by several tokens (each must be allowed in turn)."""
        for token in tokens:
            self.accept(token)

    @property
    def complete(self) -> bool:
        """Whether the answer so far is a complete valid answer (the end token may follow)."""
        return bool(self._inner.is_accepting())

    def complete_before(self, length: int) -> int | None:
        """The length of the longest accepted prefix shorter than `length` that is a
        complete answer (None if there is none): where a caller may cut an answer that went
        astray."""
        for point in reversed(self._complete_points):
            if point < length:
                return point
        return None

    @property
    def finished(self) -> bool:
        """Whether nothing but the end token may follow: decoding can stop without asking
        the model."""
        return bool(self._inner.is_stopped())

    def rollback(self, count: int) -> None:
        """Undo the last `count` accepted tokens."""
        if count and not self._inner.rollback(count):
            raise ConstraintViolation(-1, f"cannot roll back {count} tokens")
        self.consumed -= count
        while self._complete_points and self._complete_points[-1] > self.consumed:
            self._complete_points.pop()

    def reset(self) -> None:
        """Back to the start of an answer (not out of a refused token's broken state)."""
        self._inner.reset()
        self.masks_computed = 0
        self.consumed = 0
        self._complete_points = [0] if self._inner.is_accepting() else []


_lock = threading.Lock()
_compiled: weakref.WeakKeyDictionary[Any, dict[Constraint, CompiledConstraint]] = (
    weakref.WeakKeyDictionary()
)
_lltokenizers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _lltokenizer(tokenizer: Any) -> Any:
    try:
        import llguidance.hf
    except ImportError as err:
        raise ConstraintError(
            "any", f"constrained decoding needs the llguidance package: {INSTALL_HINT}"
        ) from err
    cached = _lltokenizers.get(tokenizer)
    if cached is None:
        try:
            cached = llguidance.hf.from_tokenizer(tokenizer)
        except ValueError as err:
            raise ConstraintError(
                "any", f"constrained decoding needs a fast (Rust) Hugging Face tokenizer: {err}"
            ) from err
        _lltokenizers[tokenizer] = cached
    return cached


def compile_constraint(tokenizer: Any, constraint: Constraint) -> CompiledConstraint:
    """`constraint` compiled for a Hugging Face fast tokenizer, cached per (tokenizer,
    constraint) for as long as the tokenizer lives.

    `ConstraintError` when the schema or grammar is invalid or uses what llguidance does
    not support (for example JSON Schema's ``uniqueItems``).
    """
    with _lock:
        per_tokenizer = _compiled.setdefault(tokenizer, {})
        compiled = per_tokenizer.get(constraint)
        if compiled is None:
            eos = tokenizer.eos_token_id
            compiled = CompiledConstraint(constraint, _lltokenizer(tokenizer), eos)
            per_tokenizer[constraint] = compiled
        return compiled
