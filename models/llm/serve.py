"""Answering questions with an LLM version: a fine-tuned causal LM behind a codec.

A model predictor decodes greedily with the KV cache, stops as soon as its answer is
complete, turns it into a validated output with its codec (`models.llm.codec`) and lets
the codec's fallback answer whenever that fails. Serving speed comes from generating few
tokens (a terse target such as the FIT slot code), merging the adapter into the base
weights, skipping the output head on prompt positions and, optionally, int8 weights and
drafts the prompt already holds (the codec's `draft`). By default decoding is constrained
(`models.llm.constrained`) to the codec's grammar or JSON Schema, so the model can only
write answers of the right shape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from kaizend.models.llm import base as base_model
from kaizend.models.llm.codec import Codec, InvalidOutput
from kaizend.models.llm.constrained import Constraint, Matcher, compile_constraint
from kaizend.models.llm.version import LlmVersion
from kaizend.models.task import Prediction

log = logging.getLogger(__name__)

Quantization = Literal["none", "int8"]
OnRefusal = Literal["truncate", "force"]

DEFAULT_LOOKUP = 10
"""At most this many tokens copied from the prompt are verified per pass (drafts stop at
the end of a line), for codecs whose prompt holds a draft."""


@dataclass(frozen=True)
class Answer:
    """The answer to one question."""

    text: str
    output: dict[str, Any] | None
    """The validated output; None when the model's answer was invalid and nothing fell back."""
    fallback_used: bool
    latency_ms: float
    raw: str | None = None
    """What the model generated (None when no model answered)."""
    generated_tokens: int = 0
    forward_passes: int = 0
    """Model passes spent, prefill included; below generated_tokens + 1 when drafts hit."""
    problems: tuple[str, ...] = field(default=())
    """Why the model's answer was rejected, when it was."""

    @property
    def valid(self) -> bool:
        """The model's own answer was valid (no fallback, nothing rejected)."""
        return not self.problems and not self.fallback_used

    def to_json(self) -> dict[str, Any]:
        """The JSONL record `kaizend predict` writes: text, output, fallback_used, latency_ms."""
        return {
            "text": self.text,
            "output": self.output,
            "fallback_used": self.fallback_used,
            "latency_ms": round(self.latency_ms, 2),
        }


class Answerer(Protocol):
    """Anything that answers questions: a model version or a built-in one."""

    name: str

    def answer(self, text: str) -> Answer:
        """Answer one question; never raises for bad model output (it falls back)."""
        ...

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """`models.task.Predictor`: the answers of a batch, as query events record them."""
        ...


class Predicts:
    """`Answerer.predict` for a class with `answer`: one question after the other (greedy
    decoding with a KV cache and prompt drafts gains little from padding a batch on a CPU)."""

    def predict(self: Answerer, texts: Sequence[str]) -> list[Prediction]:
        results = [self.answer(text) for text in texts]
        return [Prediction(r.output, r.fallback_used) for r in results]


class CodecFallback(Predicts):
    """A built-in version: the codec's fallback answers every question (the FIT rules)."""

    def __init__(self, codec: Codec, name: str) -> None:
        self.codec = codec
        self.name = name

    def answer(self, text: str) -> Answer:
        started = time.perf_counter()
        output = self.codec.fallback(text)
        return Answer(text, output, False, (time.perf_counter() - started) * 1000)


class ModelPredictor(Predicts):
    """A causal LM that writes its answer after the codec's prompt.

    Build it with `from_version` (a trained adapter) or `from_base` (an untrained base,
    for the baseline row of an evaluation). The codec must be the one the version was
    trained with; `prompt_lookup` > 0 drafts that many tokens per pass from the prompt;
    `constrained` holds every answer to the codec's grammar or JSON Schema, or to
    `constraint` when given.

    `on_refusal` is what happens when the model's own next token breaks the constraint:
    ``truncate`` (the default) ends the answer at the longest complete answer it had
    written, if there is one: the model was writing something invalid, such as a place
    that does not exist ("@B" then "og"), and an answer without that field is better than
    one the constraint invents ("@Bournemouth"). A refused token that continues a word
    ("og" after "B") means the word was unfinished, so the cut goes before it even where
    the answer up to it was complete ("B" is a postcode area). ``force`` goes on with the
    best allowed token, as ``truncate`` does when nothing complete came before.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        codec: Codec,
        *,
        name: str = "model",
        max_new_tokens: int | None = None,
        prompt_lookup: int = 0,
        constrained: bool = True,
        constraint: Constraint | None = None,
        on_refusal: OnRefusal = "truncate",
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.codec = codec
        self.name = name
        self.max_new_tokens = max_new_tokens or codec.max_new_tokens
        self.prompt_lookup = prompt_lookup
        self._eos = tokenizer.eos_token_id
        self.constraint = (
            compile_constraint(tokenizer, constraint or codec.constraint()) if constrained else None
        )
        self.on_refusal: OnRefusal = on_refusal

    @classmethod
    def from_version(
        cls,
        path: Path,
        codec: Codec,
        *,
        merge: bool = True,
        quantize: Quantization = "none",
        threads: int | None = None,
        prompt_lookup: int | None = None,
        constrained: bool = True,
    ) -> ModelPredictor:
        """Load a trained version directory for CPU inference.

        `merge` folds the LoRA weights into the base (no adapter matmuls per token);
        `quantize` "int8" swaps linear layers for dynamically quantised ones;
        `prompt_lookup` > 0 verifies that many drafted tokens copied from the prompt per
        pass (None: `DEFAULT_LOOKUP` when the codec drafts, else off);
        `constrained` decodes under the codec's grammar or schema.
        """
        import torch
        from peft import PeftModel

        if threads is not None:
            torch.set_num_threads(threads)
        version = LlmVersion.load(Path(path))
        started = time.perf_counter()
        model, tokenizer = base_model.load_base(version.base_path)
        if version.base_fingerprint != base_model.fingerprint(version.base_path):
            log.warning("base at %s changed since version %s was trained", version.base_path, path)
        model = PeftModel.from_pretrained(model, str(version.adapter_path))
        if merge:
            model = model.merge_and_unload()
        model = _quantized(model, quantize)
        log.info("LLM version loaded: %s in %.1f s", path, time.perf_counter() - started)
        return cls(
            model,
            tokenizer,
            codec,
            name=Path(path).name,
            prompt_lookup=(
                prompt_lookup if prompt_lookup is not None else DEFAULT_LOOKUP * codec.drafts
            ),
            constrained=constrained,
        )

    @classmethod
    def from_base(
        cls,
        base_path: Path,
        codec: Codec,
        *,
        threads: int | None = None,
        constrained: bool = True,
    ) -> ModelPredictor:
        """An untrained base model with the same prompt: the 'base model' baseline."""
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        model, tokenizer = base_model.load_base(Path(base_path))
        return cls(model, tokenizer, codec, name="base", constrained=constrained)

    def generate(self, text: str) -> tuple[str, int, int]:
        """Greedy continuation of the prompt until the answer is complete.

        Returns (text, generated tokens, model passes).
        """
        import torch

        hint = self.codec.draft(text)
        prompt = self.tokenizer(self.codec.prompt(text), add_special_tokens=False).input_ids
        matcher = self.constraint.matcher() if self.constraint is not None else None
        with torch.inference_mode():
            if self.prompt_lookup > 0:
                first: list[int] = []
                if hint is not None:
                    first = self.tokenizer(hint, add_special_tokens=False).input_ids
                    first.append(self._eos)
                generated, passes = self._decode_with_lookup(prompt, first, matcher)
            else:
                generated, passes = self._decode(prompt, matcher)
        return self.tokenizer.decode(generated, skip_special_tokens=True), len(generated), passes

    def _decode(self, prompt: list[int], matcher: Matcher | None = None) -> tuple[list[int], int]:
        import torch

        # logits_to_keep=1: the output head on prompt positions would be wasted work.
        out = self.model(input_ids=torch.tensor([prompt]), use_cache=True, logits_to_keep=1)
        passes = 1
        generated: list[int] = []
        for _ in range(self.max_new_tokens):
            logits = out.logits[0, -1]
            token, cut = self._next(logits, int(logits.argmax()), matcher)
            if cut is not None:
                return generated[:cut], passes
            if token == self._eos:
                break
            generated.append(token)
            if matcher is not None:
                matcher.accept(token)
            if self._complete(generated, matcher):
                break
            passes += 1
            out = self.model(
                input_ids=torch.tensor([[token]]),
                past_key_values=out.past_key_values,
                use_cache=True,
                logits_to_keep=1,
            )
        return generated, passes

    def _next(self, logits: Any, greedy: int, matcher: Matcher | None) -> tuple[int, int | None]:
        """(next token, None) given the model's own choice `greedy`: itself when
        unconstrained or allowed, else the best allowed token; or (-1, length) to end the
        answer at its first `length` tokens (`on_refusal` "truncate")."""
        if matcher is None:
            return greedy, None
        token = matcher.choose(logits, greedy)
        if token != greedy and self.on_refusal == "truncate":
            midword = self.tokenizer.decode([greedy])[:1].isalnum()
            cut = matcher.complete_before(matcher.consumed + (not midword))
            if cut is not None:
                return -1, cut
        return token, None

    def _complete(self, generated: list[int], matcher: Matcher | None = None) -> bool:
        if matcher is not None:
            # Only the end token may follow: stop without asking the model for it.
            return matcher.finished
        return self.codec.is_complete(self.tokenizer.decode(generated))

    def _trim(self, draft: list[int]) -> list[int]:
        """Cut a draft where its line ends: an answer is one line, followed by the end token."""
        for index, token in enumerate(draft):
            if token == self._eos or "\n" in self.tokenizer.decode([token]):
                return [*draft[:index], self._eos]
        return draft

    def _draft(self, context: list[int]) -> list[int]:
        """Tokens that followed the latest earlier occurrence of the context's last two
        tokens, else of its last token."""
        for width in (2, 1):
            if len(context) <= width:
                continue
            tail = context[-width:]
            for start in range(len(context) - width - 1, -1, -1):
                if context[start : start + width] == tail:
                    return self._trim(context[start + width : start + width + self.prompt_lookup])
        return []

    def _decode_with_lookup(
        self, prompt: list[int], first_draft: list[int], matcher: Matcher | None = None
    ) -> tuple[list[int], int]:
        """Greedy decoding that checks drafted tokens in the same pass (prompt lookup).

        Output is identical to `_decode`: a drafted token is kept only where it equals the
        greedy choice. The first pass verifies `first_draft` (the rule parser's answer and
        the end token) together with the prompt, so when the model agrees with the rules
        the whole answer costs one pass; later drafts copy from the prompt. Under a
        constraint a draft is cut to its longest valid prefix before the pass (a refused
        token could never be kept), and each position's choice is the best allowed token.
        """
        import torch

        def valid(draft: list[int]) -> list[int]:
            return draft if matcher is None else draft[: matcher.valid_prefix(draft)]

        draft = valid(first_draft[: self.max_new_tokens + 1])
        out = self.model(
            input_ids=torch.tensor([[*prompt, *draft]]),
            use_cache=True,
            logits_to_keep=len(draft) + 1,
        )
        passes = 1
        past = out.past_key_values
        context = list(prompt)
        generated: list[int] = []
        while True:
            # choices[0] follows the context, choices[i] follows draft[i - 1].
            choices: list[int] = out.logits[0].argmax(-1).tolist()
            choices[0], cut = self._next(out.logits[0, 0], choices[0], matcher)
            accepted = 0
            while cut is None and accepted < len(draft) and choices[accepted] == draft[accepted]:
                token = draft[accepted]
                accepted += 1
                if token == self._eos:
                    return generated, passes
                generated.append(token)
                context.append(token)
                if matcher is not None:
                    matcher.accept(token)
                if self._complete(generated, matcher) or len(generated) >= self.max_new_tokens:
                    return generated, passes
                choices[accepted], cut = self._next(
                    out.logits[0, accepted], choices[accepted], matcher
                )
            if cut is not None:
                return generated[:cut], passes
            next_token = choices[accepted]
            # Drop the cache entries of rejected draft tokens.
            rejected = past.get_seq_length() - len(context)
            if rejected > 0:
                past.crop(-rejected)
            if next_token == self._eos:
                return generated, passes
            generated.append(next_token)
            context.append(next_token)
            if matcher is not None:
                matcher.accept(next_token)
            if self._complete(generated, matcher) or len(generated) >= self.max_new_tokens:
                return generated, passes
            draft = valid(self._draft(context))
            out = self.model(
                input_ids=torch.tensor([[next_token, *draft]]),
                past_key_values=past,
                use_cache=True,
                logits_to_keep=len(draft) + 1,
            )
            passes += 1

    def answer(self, text: str) -> Answer:
        """Generate and decode; on an invalid answer the codec's fallback answers."""
        started = time.perf_counter()
        raw, tokens, passes = self.generate(text)
        return answer_result(text, raw, self.codec, started, tokens, passes)


def answer_result(
    text: str,
    raw: str,
    codec: Codec,
    started: float,
    generated_tokens: int = 0,
    forward_passes: int = 0,
) -> Answer:
    """The `Answer` of a model's answer `raw` to `text`, whichever backend generated it.

    The answer is decoded and validated by the codec; when it is invalid the codec's
    fallback answers instead (`fallback_used`, the problems), or nothing does (output
    None). `started` is the `time.perf_counter()` reading when the question arrived.
    """
    try:
        output = codec.decode(raw)
    except InvalidOutput as err:
        fallback = codec.fallback(text)
        latency_ms = (time.perf_counter() - started) * 1000
        return Answer(
            text, fallback, fallback is not None, latency_ms, raw, generated_tokens,
            forward_passes, tuple(err.problems),
        )  # fmt: skip
    latency_ms = (time.perf_counter() - started) * 1000
    return Answer(text, output, False, latency_ms, raw, generated_tokens, forward_passes)


def _quantized(model: Any, quantize: Quantization) -> Any:
    if quantize == "none":
        return model
    import torch

    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
