"""The FIT query parser: the generic LLM task (`models.llm.task`) with the FIT codec (the
slot code and the rule parser's draft, `models.fit.prompt`), the generated FIT training
set, the FIT metrics, the rule parser as built-in version, FIT drift fields and simulated
users; registered as the ``fit-parser`` kind in ``pyproject.toml``.

Training data is the generated FIT training split (`models.fit.querygen`) plus every
correction production sent back, as for any LLM task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any, Literal

from kaizend.models.fit.prompt import FitCodec
from kaizend.models.fit.querygen import generate_examples, split_examples
from kaizend.models.fit.scoring import fit_metrics
from kaizend.models.kinds import TaskContext
from kaizend.models.llm.config import LlmSettings
from kaizend.models.llm.evaluate import ExtraMetrics
from kaizend.models.llm.task import LlmTask
from kaizend.models.task import Task
from pydantic import Field

RULES_VERSION = "rules"
"""The built-in version: the rule parser (`models.fit.rules`)."""


class FitParserSettings(LlmSettings):
    """The keys of a ``fit-parser`` task's [tasks.<name>] table."""

    target_format: Literal["slots", "json"] = Field(
        "slots",
        description="What the model writes: the terse slot code (fast to generate) or the "
        "compact JSON (see models.fit.prompt).",
    )
    rule_hint: bool = Field(
        True,
        description="Show the rule parser's answer in the prompt: the model learns to copy "
        "and correct it, and serving verifies the copy several tokens per pass.",
    )


@dataclass(frozen=True)
class FitParserTask(LlmTask):
    """The FIT parser task (see the module docstring)."""

    generator_seed: int = 0
    builtin_version: str = RULES_VERSION

    def _splits(self) -> dict[str, list[dict[str, Any]]]:
        return split_examples(generate_examples(seed=self.generator_seed), seed=self.generator_seed)

    def base_examples(self) -> dict[str, list[dict[str, Any]]]:
        """The generated training and validation splits."""
        splits = self._splits()
        return {"train": splits["train"], "validation": splits["validation"]}

    def benchmark_examples(self) -> Sequence[dict[str, Any]]:
        """The generated test split: combinations of slots the training split never has."""
        return self._splits()["test"]

    def extra_metrics(self) -> ExtraMetrics:
        return fit_metrics

    def codec_of(self, version: Path) -> FitCodec:
        """The FIT codec the version was trained with (slot code or JSON, rule hint)."""
        return trained_codec(version)

    def builtin(self) -> Any:
        from kaizend.models.llm.serve import CodecFallback

        return CodecFallback(self.codec, RULES_VERSION)

    def drift_fields(self) -> Any:
        from kaizend.models.fit.drift import FIT_FIELDS

        return FIT_FIELDS

    def simulate_traffic(
        self,
        predictor: Any,
        *,
        queries: int,
        seed: int,
        model_version: str,
        options: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """Questions from the FIT user pool (not the training generator), judged by users
        who know the intended parse; a share of wrong parses get corrected. Options:
        ``pool`` (traffic: what users send day to day; heldout: slot combinations traffic
        never has), ``noise`` (share of raters who get it backwards), ``correction_share``
        (share of wrong parses whose user sends the intended parse back). One query a
        second, timed so that the last reaction comes a minute before now; the same seed and
        version write the same event ids."""
        from datetime import datetime, timedelta

        from kaizend.models.fit.userpool import pool, sample_traffic
        from kaizend.models.fit.users import UserBehaviour, simulate_parser_traffic

        unknown = set(options) - {"pool", "noise", "correction_share"}
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}: pool, noise, correction_share")
        pool_name = options.get("pool", "traffic")
        if pool_name not in ("traffic", "heldout"):
            raise ValueError(f"pool must be traffic or heldout, not {pool_name!r}")
        behaviour = UserBehaviour(
            **{k: float(options[k]) for k in ("noise", "correction_share") if k in options}
        )
        latest = max(behaviour.feedback_delay_s[1], behaviour.correction_delay_s[1]) + 60
        return simulate_parser_traffic(
            sample_traffic(pool(pool_name), queries, seed=seed),
            predictor,
            seed=seed,
            model_version=model_version,
            behaviour=behaviour,
            start=datetime.now(UTC) - timedelta(seconds=queries + latest),
        )


def trained_codec(version: Path) -> FitCodec:
    """The FIT codec a version directory was trained with (slot code or JSON, rule hint)."""
    from kaizend.models.llm.version import LlmVersion

    trained = LlmVersion.load(Path(version)).codec
    return FitCodec(trained["target_format"], with_hint=trained["rule_hint"])


def load_fit_parser(version: str | Path, **options: Any) -> Any:
    """A FIT parser version outside a daemon: ``"rules"`` or a trained version directory,
    served with the codec it was trained with; `options` go to
    `models.llm.serve.ModelPredictor.from_version` (quantize, threads, prompt_lookup,
    constrained)."""
    from kaizend.models.llm.serve import CodecFallback, ModelPredictor

    if str(version) == RULES_VERSION:
        return CodecFallback(FitCodec(), RULES_VERSION)
    return ModelPredictor.from_version(Path(version), trained_codec(version), **options)


class FitParserKind:
    name = "fit-parser"
    summary = "FIT question -> search filters (JSON): LoRA on a causal LM, rules as fallback"
    settings_model = FitParserSettings

    def build(self, context: TaskContext) -> Task:
        settings: Any = context.settings
        return FitParserTask(
            name=context.name,
            codec=FitCodec(settings.target_format, with_hint=settings.rule_hint),
            config=settings.training_config(context.name, halve_batch=context.halve_batch),
            base_source=settings.base_model or None,
            data_dir=context.global_settings.daemon.data_dir,
            correction_weight=settings.correction_weight,
            constrained=settings.constrained,
        )


KIND = FitParserKind()
