"""An LLM task: text -> a structured output, learnt from corrections with LoRA.

The training set is the kind's base examples (an optional seed file; the FIT parser's
generated set) plus every stored correction of the task: the query's text with the
corrected output as the target, each counted ``correction_weight`` times, since they are
what the model got wrong about real users. Corrections and confirmed answers that are not
valid for the codec are skipped and counted. The fresh set is the newest share of the
corrections and the newest share of the answers users confirmed
(`models.task.confirmed_answers`), with the confirmed answer as the expected output.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
from kaizend.models.llm.base import ensure_base
from kaizend.models.llm.codec import Codec, InvalidOutput
from kaizend.models.llm.config import LlmTrainingConfig
from kaizend.models.llm.evaluate import (
    GREATER_IS_BETTER,
    PRIMARY_METRIC,
    ExtraMetrics,
    evaluate,
    load_examples,
)
from kaizend.models.task import (
    CONFIRMED,
    CORRECTION,
    OptionalHooks,
    TrainingSet,
    confirmed_answers,
    corrections_stored,
    hold_back_newest,
    newest_corrections,
)

log = logging.getLogger(__name__)

BASE_VERSION = "base"
"""The built-in version of a task without a fallback: the untrained base under the codec."""


@dataclass(frozen=True)
class LlmTask(OptionalHooks):
    """Builds, trains, evaluates and loads versions of an LLM task.

    ``base_source`` is what `models.llm.base.ensure_base` takes (None: the packaged
    SmolLM2); it is converted or checked only when a model is needed, so building a task
    to count its signal costs nothing. ``seed_file`` holds ``{text, expected}`` examples trained
    on beside the corrections (its first ``validation_share`` are the validation split);
    ``benchmark`` those the gate also scores on.
    """

    name: str
    codec: Codec
    config: LlmTrainingConfig
    base_source: Path | str | None = None
    data_dir: Path = Path("var")
    correction_weight: int = 3
    constrained: bool = True
    """Serve model versions with constrained decoding (`models.llm.constrained`)."""
    seed_file: Path | None = None
    benchmark: Path | None = None
    validation_share: float = 0.1
    builtin_version: str = BASE_VERSION
    primary_metric: str = PRIMARY_METRIC
    greater_is_better: bool = GREATER_IS_BETTER

    @cached_property
    def base_path(self) -> Path:
        """The local Hugging Face directory of the base (converted on first use)."""
        return ensure_base(self.data_dir, self.base_source)

    def count_new_signal(
        self, con: duckdb.DuckDBPyConnection, since: datetime | None, until: datetime
    ) -> int:
        """Corrections of the task's queries stored after ``since`` (all when None)."""
        return corrections_stored(con, self.name, since, until)

    def corrections(self, con: duckdb.DuckDBPyConnection) -> tuple[list[dict[str, Any]], Counter]:
        """Valid corrections as examples; invalid ones are counted by reason, not trained on."""
        examples, skipped = [], Counter()
        for event_id, text, corrected in newest_corrections(con, self.name):
            try:
                expected = self.codec.canonical(json.loads(corrected))
            except (InvalidOutput, json.JSONDecodeError, TypeError) as err:
                skipped["invalid corrected_output"] += 1
                log.warning("correction %s skipped: %s", event_id, err)
                continue
            examples.append(
                {"id": event_id, "text": text, "expected": expected, "source": CORRECTION}
            )
        return examples, skipped

    def confirmed(self, con: duckdb.DuckDBPyConnection) -> tuple[list[dict[str, Any]], Counter]:
        """Confirmed answers as examples (the answer is the target), oldest first; answers
        that are not valid outputs are counted by reason."""
        examples, skipped = [], Counter()
        for answer in confirmed_answers(con, self.name):
            try:
                expected = self.codec.canonical(answer.output)
            except InvalidOutput as err:
                skipped["invalid confirmed output"] += 1
                log.warning("confirmed answer of %s skipped: %s", answer.query_id, err)
                continue
            examples.append({
                "id": answer.query_id, "text": answer.text, "expected": expected,
                "source": CONFIRMED, "feedback_ids": list(answer.feedback_ids),
            })  # fmt: skip
        return examples, skipped

    def base_examples(self) -> dict[str, list[dict[str, Any]]]:
        """``train`` and ``validation`` examples trained on beside the corrections: the seed
        file's, its first ``validation_share`` held out."""
        if self.seed_file is None:
            return {"train": [], "validation": []}
        rows = [
            {**row, "id": row.get("id", f"seed-{number}")}
            for number, row in enumerate(load_examples(self.seed_file))
        ]
        for row in rows:
            row["expected"] = self.codec.canonical(row["expected"])
        held = round(len(rows) * self.validation_share)
        return {"train": rows[held:], "validation": rows[:held]}

    def benchmark_examples(self) -> Sequence[dict[str, Any]]:
        """The benchmark file's examples (none without one)."""
        return self.load_examples(self.benchmark) if self.benchmark is not None else []

    def build_training_set(
        self, con: duckdb.DuckDBPyConnection, *, fresh_share: float = 0.0
    ) -> TrainingSet:
        base = self.base_examples()
        corrections, skipped = self.corrections(con)
        corrections, fresh = hold_back_newest(corrections, fresh_share)
        # Confirmed answers are not trained on: only their newest share is used, as fresh.
        confirmed, confirmed_skipped = self.confirmed(con)
        _, fresh_confirmed = hold_back_newest(confirmed, fresh_share)
        skipped.update(confirmed_skipped)
        feedback = sorted(id_ for example in fresh_confirmed for id_ in example["feedback_ids"])
        weighted = [
            {**example, "id": f"{example['id']}#{copy}"}
            for example in corrections
            for copy in range(self.correction_weight)
        ]
        return TrainingSet(
            train=[*base["train"], *weighted],
            validation=base["validation"],
            fresh=[*fresh, *fresh_confirmed],
            event_ids={"correction": [example["id"] for example in corrections]},
            fresh_event_ids={
                "correction": [example["id"] for example in fresh],
                **({"feedback": feedback} if feedback else {}),
            },
            skipped=dict(skipped),
        )

    def train(
        self,
        training_set: TrainingSet,
        out_dir: Path,
        *,
        progress: Callable[[Any], None] | None = None,
        progress_bar: bool = False,
    ) -> Path:
        from kaizend.models.llm.train import train_llm

        version = train_llm(
            self.codec,
            training_set.train,
            base_path=self.base_path,
            out_dir=out_dir,
            config=self.config,
            validation=training_set.validation,
            progress=progress,
            progress_bar=progress_bar,
        )
        return version.path

    def extra_metrics(self) -> ExtraMetrics | None:
        """A domain's own metrics added to every evaluation (none here)."""
        return None

    def evaluate(self, version: str | Path, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return evaluate(
            self.load(version), examples, canonical=self.codec.canonical,
            extra=self.extra_metrics(),
        )  # fmt: skip

    def codec_of(self, version: Path) -> Codec:
        """The codec to serve a trained version with: the task's, with a warning when the
        version was trained with another (a schema changed since)."""
        from kaizend.models.llm.version import LlmVersion

        trained = LlmVersion.load(version).codec
        if trained != self.codec.describe():
            log.warning(
                "version %s was trained with another codec than task %s has now; answers are "
                "held to the current one", version, self.name,
            )  # fmt: skip
        return self.codec

    def builtin(self) -> Any:
        """The built-in version: the untrained base model under the codec."""
        from kaizend.models.llm.serve import ModelPredictor

        return ModelPredictor.from_base(self.base_path, self.codec, constrained=self.constrained)

    def load(self, version: str | Path) -> Any:
        from kaizend.models.llm.serve import ModelPredictor

        if str(version) == self.builtin_version:
            return self.builtin()
        path = Path(version)
        return ModelPredictor.from_version(path, self.codec_of(path), constrained=self.constrained)

    def load_examples(self, path: Path) -> list[dict[str, Any]]:
        """JSONL of ``{text, expected}`` (`kaizend examples` writes some)."""
        return load_examples(path)

    def remote_predictor(self, settings: Any, version: Path, version_id: str) -> Any:
        from kaizend.models.llm.ollama import OllamaPredictor
        from kaizend.models.ollama import model_name

        # Published to Ollama when it was promoted, or by `kaizend ollama publish`.
        return OllamaPredictor(
            settings.ollama, model_name(settings.ollama, version_id), self.codec_of(version)
        )

    def publish_to_ollama(self, settings: Any, record: Any) -> Any:
        from kaizend.models.llm.ollama import publish_version

        path = record.artifact_path
        return publish_version(settings, record, self.codec_of(Path(path)) if path else self.codec)
