"""An example task kind: text -> one label, TF-IDF features and logistic regression.

Written against kaizend's public plugin API only (`kaizend.models.kinds`,
`kaizend.models.task`); registered through the ``kaizend.task_kinds`` entry point of this
package's ``pyproject.toml``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
from kaizend.core.errors import ConfigError
from kaizend.models.kinds import TaskContext
from kaizend.models.task import (
    CONFIRMED,
    CORRECTION,
    METRIC_TYPE,
    PER_EXAMPLE,
    NotEnoughSignal,
    OptionalHooks,
    Prediction,
    TrainingSet,
    confirmed_answers,
    corrections_stored,
    hold_back_newest,
    newest_corrections,
)
from pydantic import BaseModel, ConfigDict, Field

BUILTIN = "seed"
"""Version 0: the classifier fitted on the seed examples alone."""
EXAMPLES_FILE = "examples.jsonl"
SETTINGS_FILE = "classifier.json"


class TfidfSettings(BaseModel):
    """The keys of a ``[tasks.<name>]`` table of kind ``tfidf-classifier``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: tuple[str, ...] = Field(min_length=2, description="The labels an answer may take.")
    seed_examples: Path = Field(
        description='JSONL of {"text", "label"}: version 0 and the benchmark (a relative '
        "path lies in the data directory).",
    )
    correction_weight: int = Field(3, ge=1, description="Copies of each correction in training.")
    C: float = Field(4.0, gt=0, description="Inverse regularisation of the logistic regression.")


def read_examples(path: Path, labels: Sequence[str]) -> list[dict[str, Any]]:
    """``{text, label}`` lines as evaluation examples ``{id, text, expected: {label}}``."""
    examples = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, label = (
                str(row["text"]),
                row.get("label", (row.get("expected") or {}).get("label")),
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{path}:{number}: needs a text and a label: {err}") from err
        if label not in labels:
            raise ValueError(f"{path}:{number}: label {label!r} is not one of {list(labels)}")
        examples.append(
            {"id": f"{Path(path).name}:{number}", "text": text, "expected": {"label": label}}
        )
    return examples


@lru_cache(maxsize=8)
def _fitted(examples_json: str, c: float) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rows = json.loads(examples_json)
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        LogisticRegression(C=c, max_iter=1000),
    )
    pipeline.fit([r["text"] for r in rows], [r["expected"]["label"] for r in rows])
    return pipeline


class Classifier:
    """A loaded version: the pipeline fitted on the version's examples."""

    def __init__(self, examples: Sequence[dict[str, Any]], c: float) -> None:
        self.pipeline = _fitted(json.dumps(list(examples), sort_keys=True), c)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        probabilities = self.pipeline.predict_proba(list(texts))
        classes = list(self.pipeline.classes_)
        answers = []
        for row in probabilities:
            best = int(row.argmax())
            answers.append(
                Prediction({"label": str(classes[best]), "probability": round(float(row[best]), 4)})
            )
        return answers


@dataclass(frozen=True)
class TfidfTask(OptionalHooks):
    name: str
    settings: TfidfSettings
    primary_metric: str = "accuracy"
    greater_is_better: bool = True
    builtin_version: str = BUILTIN

    def seed(self) -> list[dict[str, Any]]:
        return read_examples(self.settings.seed_examples, self.settings.labels)

    def count_new_signal(
        self, con: duckdb.DuckDBPyConnection, since: datetime | None, until: datetime
    ) -> int:
        return corrections_stored(con, self.name, since, until)

    def _labelled(self, output: Any) -> str | None:
        label = output.get("label") if isinstance(output, dict) else None
        return label if label in self.settings.labels else None

    def build_training_set(
        self, con: duckdb.DuckDBPyConnection, *, fresh_share: float = 0.0
    ) -> TrainingSet:
        corrections, skipped = [], {}
        for event_id, text, corrected in newest_corrections(con, self.name):
            label = self._labelled(json.loads(corrected))
            if label is None:
                skipped["corrected_output without a known label"] = skipped.get(
                    "corrected_output without a known label", 0) + 1  # fmt: skip
                continue
            corrections.append({"id": event_id, "text": text, "expected": {"label": label},
                                "source": CORRECTION})  # fmt: skip
        if not corrections:
            raise NotEnoughSignal(self.name, "no usable correction stored", {"corrections": 0})
        corrections, fresh = hold_back_newest(corrections, fresh_share)
        confirmed = [
            {"id": a.query_id, "text": a.text, "expected": {"label": self._labelled(a.output)},
             "source": CONFIRMED, "feedback_ids": list(a.feedback_ids)}
            for a in confirmed_answers(con, self.name) if self._labelled(a.output)
        ]  # fmt: skip
        # Confirmed answers are labels too: the older ones are trained on (without them the
        # classifier learns only where the champion was wrong, and forgets where it was right).
        confirmed, fresh_confirmed = hold_back_newest(confirmed, fresh_share)
        weighted = [
            {**example, "id": f"{example['id']}#{copy}"}
            for example in corrections
            for copy in range(self.settings.correction_weight)
        ]
        feedback = sorted(i for example in fresh_confirmed for i in example["feedback_ids"])
        return TrainingSet(
            train=[*self.seed(), *weighted, *confirmed],
            validation=[],
            fresh=[*fresh, *fresh_confirmed],
            event_ids={
                "correction": [example["id"] for example in corrections],
                "feedback": sorted(i for example in confirmed for i in example["feedback_ids"]),
            },
            fresh_event_ids={
                "correction": [e["id"] for e in fresh],
                **({"feedback": feedback} if feedback else {}),
            },  # fmt: skip
            skipped=skipped,
        )

    def benchmark_examples(self) -> Sequence[dict[str, Any]]:
        return self.seed()

    def train(self, training_set: TrainingSet, out_dir: Path, *, progress: Any = None,
              progress_bar: bool = False) -> Path:  # fmt: skip
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        examples = [{"text": e["text"], "expected": e["expected"]} for e in training_set.train]
        Classifier(examples, self.settings.C)  # fit once: a bad training set fails here
        (out_dir / EXAMPLES_FILE).write_text("".join(json.dumps(e) + "\n" for e in examples))
        # Written last: a directory with this file is a complete version.
        (out_dir / SETTINGS_FILE).write_text(
            json.dumps({"C": self.settings.C, "labels": self.settings.labels})
        )
        return out_dir

    def load(self, version: str | Path) -> Classifier:
        if version == BUILTIN:
            return Classifier(self.seed(), self.settings.C)
        directory = Path(version)
        config = json.loads((directory / SETTINGS_FILE).read_text())
        lines = (directory / EXAMPLES_FILE).read_text().splitlines()
        return Classifier([json.loads(line) for line in lines], float(config["C"]))

    def load_examples(self, path: Path) -> list[dict[str, Any]]:
        return read_examples(path, self.settings.labels)

    def evaluate(self, version: str | Path, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        classifier = self.load(version)
        started = time.perf_counter()
        answers = classifier.predict([e["text"] for e in examples])
        per_example = [
            1.0 if answer.output["label"] == example["expected"]["label"] else 0.0
            for answer, example in zip(answers, examples, strict=True)
        ]
        return {
            "primary_metric": self.primary_metric,
            self.primary_metric: sum(per_example) / len(per_example) if per_example else 0.0,
            PER_EXAMPLE: per_example,
            METRIC_TYPE: "binary",
            "latency_ms_per_query": round(
                1000 * (time.perf_counter() - started) / max(1, len(examples)), 3
            ),
        }


class TfidfKind:
    name = "tfidf-classifier"
    summary = "text -> one label: TF-IDF + logistic regression (an example plugin)"
    settings_model = TfidfSettings

    def build(self, context: TaskContext) -> TfidfTask:
        settings: Any = context.settings
        seed = context.path(settings.seed_examples)
        if not seed.is_file():
            key = f"tasks.{context.name}.seed_examples"
            raise ConfigError(key, f"config key {key!r}: no file {seed}")
        return TfidfTask(
            name=context.name, settings=settings.model_copy(update={"seed_examples": seed})
        )


KIND = TfidfKind()
