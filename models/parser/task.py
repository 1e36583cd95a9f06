"""The FIT query parser as a kaizend task.

Training data is the generated FIT training split (`models.fit.querygen`) plus every
correction production sent back for a parser query: the query's text with the corrected
output as the target. Corrections count ``correction_weight`` times, since they are what the
generator got wrong about real users. The fresh set is the newest share of the corrections
and the newest share of the answers users confirmed (`models.task.confirmed_answers`), with
the confirmed answer as the expected output.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
from kaizend.models.fit.querygen import generate_examples, split_examples
from kaizend.models.fit.schema import InvalidParse, to_compact_dict, validate_output
from kaizend.models.parser.base import ensure_base
from kaizend.models.parser.config import ParserTrainingConfig
from kaizend.models.parser.evaluate import GREATER_IS_BETTER, PRIMARY_METRIC, evaluate
from kaizend.models.parser.serve import load_parser
from kaizend.models.parser.train import train_parser
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


@dataclass(frozen=True)
class ParserTask(OptionalHooks):
    """Builds, trains, evaluates and loads parser versions.

    ``base_source`` is what `models.parser.base.ensure_base` takes (None: the packaged
    SmolLM2); it is converted or checked only when a model is trained, so building a task to
    count its signal costs nothing.
    """

    config: ParserTrainingConfig
    base_source: Path | str | None = None
    data_dir: Path = Path("var")
    correction_weight: int = 3
    constrained: bool = True
    """Serve model versions with constrained decoding (`models.parser.constrained`)."""
    seed: int = 0
    name: str = "parser"
    primary_metric: str = PRIMARY_METRIC
    greater_is_better: bool = GREATER_IS_BETTER
    builtin_version: str = "rules"

    @cached_property
    def base_path(self) -> Path:
        """The local Hugging Face directory of the base (converted on first use)."""
        return ensure_base(self.data_dir, self.base_source)

    def count_new_signal(
        self, con: duckdb.DuckDBPyConnection, since: datetime | None, until: datetime
    ) -> int:
        """Corrections of parser queries stored after ``since`` (all when None), up to ``until``."""
        return corrections_stored(con, self.name, since, until)

    def corrections(self, con: duckdb.DuckDBPyConnection) -> tuple[list[dict[str, Any]], Counter]:
        """Valid corrections as examples; invalid ones are counted by reason, not trained on."""
        examples, skipped = [], Counter()
        for event_id, text, corrected in newest_corrections(con, self.name):
            try:
                expected = to_compact_dict(validate_output(json.loads(corrected)))
            except (InvalidParse, json.JSONDecodeError, TypeError) as err:
                skipped["invalid corrected_output"] += 1
                log.warning("correction %s skipped: %s", event_id, err)
                continue
            examples.append(
                {"id": event_id, "text": text, "expected": expected, "source": CORRECTION}
            )
        return examples, skipped

    def confirmed(self, con: duckdb.DuckDBPyConnection) -> tuple[list[dict[str, Any]], Counter]:
        """Confirmed answers as examples (the answer is the target), oldest first; answers
        that are not a valid parse are counted by reason."""
        examples, skipped = [], Counter()
        for answer in confirmed_answers(con, self.name):
            output = answer.output
            if isinstance(output, dict):  # `kaizend parse` may record the fallback flag in it
                output = {k: v for k, v in output.items() if k != "fallback_used"}
            try:
                expected = to_compact_dict(validate_output(output))
            except InvalidParse as err:
                skipped["invalid confirmed output"] += 1
                log.warning("confirmed answer of %s skipped: %s", answer.query_id, err)
                continue
            examples.append({
                "id": answer.query_id, "text": answer.text, "expected": expected,
                "source": CONFIRMED, "feedback_ids": list(answer.feedback_ids),
            })  # fmt: skip
        return examples, skipped

    def _splits(self) -> dict[str, list[dict[str, Any]]]:
        return split_examples(generate_examples(seed=self.seed), seed=self.seed)

    def benchmark_examples(self) -> Sequence[dict[str, Any]]:
        """The generated test split: combinations of slots the training split never has."""
        return self._splits()["test"]

    def build_training_set(
        self, con: duckdb.DuckDBPyConnection, *, fresh_share: float = 0.0
    ) -> TrainingSet:
        splits = self._splits()
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
            train=[*splits["train"], *weighted],
            validation=splits["validation"],
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
        version = train_parser(
            training_set.train,
            base_path=self.base_path,
            out_dir=out_dir,
            config=self.config,
            validation=training_set.validation,
            progress=progress,
            progress_bar=progress_bar,
        )
        return version.path

    def evaluate(self, version: str | Path, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return evaluate(self.load(version), examples)

    def load(self, version: str | Path) -> Any:
        return load_parser(version, constrained=self.constrained)

    def load_examples(self, path: Path) -> list[dict[str, Any]]:
        """JSONL of ``{text, expected}`` (`kaizend examples` writes some)."""
        from kaizend.models.parser.evaluate import load_examples

        return load_examples(path)

    def drift_fields(self) -> Any:
        from kaizend.models.fit.drift import FIT_FIELDS

        return FIT_FIELDS

    def remote_predictor(self, settings: Any, version: Path, version_id: str) -> Any:
        from kaizend.models.parser.ollama import OllamaParser

        # Published to Ollama when it was promoted, or by `kaizend ollama publish`.
        return OllamaParser.from_version(settings.ollama, version, version_id)

    def publish_to_ollama(self, settings: Any, record: Any) -> Any:
        from kaizend.models.parser.ollama import publish_version

        return publish_version(settings, record)

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
