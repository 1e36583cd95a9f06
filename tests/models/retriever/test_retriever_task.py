"""The retriever task end to end on a tiny model: feedback -> pairs -> version -> search."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kaizend.handlers.events import EVENT_TYPES, event_row
from kaizend.models.fit.retrieval import Register, generate_queries, simulate_feedback
from kaizend.models.fit.retriever import RetrieverTask
from kaizend.models.retriever.config import RetrieverSettings
from kaizend.models.retriever.search import SearchResult
from kaizend.models.retriever.train import COMPLETE_MARK, last_complete_checkpoint, rows_for_loss
from kaizend.models.retriever.version import IncompleteVersion, RetrieverVersion
from kaizend.models.task import NotEnoughSignal, TrainProgress
from kaizend.storage.events import EventStore
from kaizend.storage.vectors import IndexNotReady

from tests.models.retriever.conftest import TINY_SITES


def make_task(tmp_path: Path, settings: RetrieverSettings) -> RetrieverTask:
    return RetrieverTask(
        settings, tmp_path / "chroma", site_count=TINY_SITES, benchmark_size=30, name="retriever"
    )


def store_feedback(task: RetrieverTask, path: Path, queries: int = 120) -> EventStore:
    """Simulated users rating what the base index returns, stored as the daemon stores it."""
    register = Register(task.sites)
    held_out = {query.key for query in task.benchmark_queries()}
    generated = generate_queries(register, queries, seed=5, exclude_keys=held_out)
    events = simulate_feedback(generated, task.load("base"), register, seed=5)
    tables: dict[str, list[dict]] = {}
    for event in events:
        body = dict(event)
        kind = body.pop("kind")
        row = event_row(EVENT_TYPES[kind].model_validate(body)) | {"ingested_at": datetime.now(UTC)}
        tables.setdefault(f"{kind}_events", []).append(row)
    store = EventStore(path)
    store.write(tables)
    return store


@pytest.fixture(scope="module")
def feedback_db(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> tuple[Path, Path]:
    """(chroma dir, DuckDB file): the tiny base index and simulated feedback on it, once."""
    directory = tmp_path_factory.mktemp("retriever-feedback")
    task = make_task(directory, RetrieverSettings(base_model=str(tiny_model)))
    store_feedback(task, directory / "k.duckdb").close()
    return directory, directory / "k.duckdb"


def stored(feedback_db: tuple[Path, Path], settings: RetrieverSettings) -> tuple:
    """A task sharing the prepared base index, and a connection to the stored feedback."""
    import duckdb

    directory, db = feedback_db
    return make_task(directory, settings), duckdb.connect(str(db), read_only=True)


def test_without_enough_feedback_training_is_refused_with_counts(
    tmp_path: Path, tiny_settings: RetrieverSettings
) -> None:
    task = make_task(tmp_path, tiny_settings)
    store = EventStore(tmp_path / "empty.duckdb")
    with pytest.raises(NotEnoughSignal, match="0 positive judgements stored, 5 needed") as err:
        task.build_training_set(store.cursor())
    assert err.value.counts["positive"] == 0


def test_feedback_to_a_searchable_fine_tuned_version(
    tmp_path: Path, tiny_settings: RetrieverSettings, feedback_db: tuple[Path, Path]
) -> None:
    task, con = stored(feedback_db, tiny_settings)
    training = task.build_training_set(con, fresh_share=0.2)

    train_queries = {pair["query_id"] for pair in training.train}
    validation_queries = {pair["query_id"] for pair in training.validation}
    assert train_queries and validation_queries and not train_queries & validation_queries
    assert training.fresh and all(example["relevant_ids"] for example in training.fresh)
    fresh_ids = {example["id"] for example in training.fresh}
    assert not fresh_ids & (train_queries | validation_queries)
    assert training.event_ids["feedback"] and training.fresh_event_ids["feedback"]
    # Held back together: corrected queries and answers users confirmed.
    sources = {example["source"] for example in training.fresh}
    assert {"correction", "confirmed"} <= sources <= {"correction", "confirmed", "rated"}
    for pair in training.train:
        assert pair["positive_id"] not in pair["negative_ids"]

    reports: list[TrainProgress] = []
    out = task.train(training, tmp_path / "retriever-v1", progress=reports.append)

    version = RetrieverVersion.load(out)
    assert (out / "model" / "modules.json").is_file()
    assert version.metrics["steps"] == 4 and version.metrics["eval_loss"] is not None
    assert version.config["training"]["loss"] == "mnrl"
    manifest = (out / "manifest.json").read_text()
    assert str(len(training.train)) in manifest
    assert not (out / "checkpoints").exists()
    assert [report.step for report in reports] == [2, 4]
    assert all(report.total_steps == 4 and report.loss > 0 for report in reports)

    benchmark = task.benchmark_examples()
    base_report = task.evaluate("base", benchmark)
    tuned_report = task.evaluate(out, benchmark)
    for report in (base_report, tuned_report):
        assert report["examples"] == 30 and report["documents"] == TINY_SITES
        assert 0.0 <= report["ndcg@10"] <= 1.0
        assert report["recall@1"] <= report["recall@5"] <= report["recall@10"]
    assert tuned_report["version"] == "retriever-v1"
    assert {"sites__base", "sites__retriever-v1"} <= set(task.store.names())

    results = task.load(out).search("wind turbines in Berkshire", k=3)
    assert len(results) == 3 and all(isinstance(r, SearchResult) for r in results)
    assert results[0].score >= results[1].score >= results[2].score
    assert results[0].text and results[0].metadata["technology"]


def test_pairs_become_the_rows_each_loss_takes() -> None:
    pairs = [{"anchor": "q", "positive": "p", "negatives": ["n1", "n2"]}]
    assert rows_for_loss(pairs, "mnrl") == {
        "anchor": ["q"], "positive": ["p"], "negative_1": ["n1"], "negative_2": ["n2"],
    }  # fmt: skip
    assert rows_for_loss(pairs, "triplet") == {
        "anchor": ["q", "q"], "positive": ["p", "p"], "negative": ["n1", "n2"],
    }  # fmt: skip
    assert rows_for_loss(pairs, "cosine") == {
        "sentence1": ["q", "q", "q"], "sentence2": ["p", "n1", "n2"], "score": [1.0, 0.0, 0.0],
    }  # fmt: skip
    with pytest.raises(ValueError, match="hard_negatives"):
        rows_for_loss([{"anchor": "q", "positive": "p", "negatives": []}], "triplet")


def test_a_selectable_loss_trains_too(
    tmp_path: Path, tiny_settings: RetrieverSettings, feedback_db: tuple[Path, Path]
) -> None:
    loss = "triplet"
    update = {"loss": loss, "max_steps": 2}
    settings = tiny_settings.model_copy(
        update={"training": tiny_settings.training.model_copy(update=update)}
    )
    task, con = stored(feedback_db, settings)
    training = task.build_training_set(con)
    out = task.train(training, tmp_path / f"retriever-{loss}")
    assert RetrieverVersion.load(out).config["training"]["loss"] == loss


def test_an_interrupted_training_is_incomplete_then_resumes_from_its_checkpoint(
    tmp_path: Path, tiny_settings: RetrieverSettings, feedback_db: tuple[Path, Path]
) -> None:
    task, con = stored(feedback_db, tiny_settings)
    training = task.build_training_set(con)
    out = tmp_path / "retriever-v2"

    def crash(report: TrainProgress) -> None:
        if report.step == 4:
            raise KeyboardInterrupt  # the process was stopped after checkpoint 2

    with pytest.raises(KeyboardInterrupt):
        task.train(training, out, progress=crash)
    with pytest.raises(IncompleteVersion, match="resume"):
        task.load(out)

    reports: list[TrainProgress] = []
    task.train(training, out, progress=reports.append)
    assert [report.step for report in reports] == [4]  # steps 1-2 were not trained again
    assert RetrieverVersion.load(out).metrics["steps"] == 4


def test_a_checkpoint_torn_by_a_kill_is_passed_over_on_resume(
    tmp_path: Path, tiny_settings: RetrieverSettings, feedback_db: tuple[Path, Path]
) -> None:
    task, con = stored(feedback_db, tiny_settings)
    training = task.build_training_set(con)
    out = tmp_path / "retriever-v2"

    def crash(report: TrainProgress) -> None:
        if report.step == 4:
            raise KeyboardInterrupt  # stopped after checkpoint 2, before checkpoint 4

    with pytest.raises(KeyboardInterrupt):
        task.train(training, out, progress=crash)
    checkpoints = out / "checkpoints"
    assert (checkpoints / "checkpoint-2" / COMPLETE_MARK).is_file()
    # What a kill during the save of checkpoint 4 leaves: its directory, half its files.
    torn = checkpoints / "checkpoint-4"
    shutil.copytree(checkpoints / "checkpoint-2", torn)
    (torn / COMPLETE_MARK).unlink()
    (torn / "trainer_state.json").unlink()
    optimizer = torn / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    assert last_complete_checkpoint(checkpoints) == checkpoints / "checkpoint-2"

    reports: list[TrainProgress] = []
    task.train(training, out, progress=reports.append)
    assert [report.step for report in reports] == [4]  # resumed at 2, not from the torn 4
    assert RetrieverVersion.load(out).metrics["steps"] == 4


def test_a_version_is_not_served_before_its_collection_is_complete(
    tmp_path: Path, tiny_settings: RetrieverSettings
) -> None:
    task = make_task(tmp_path, tiny_settings)
    with pytest.raises(IndexNotReady, match="does not exist"):
        task.load("base", build=False)
    task.load("base")
    assert len(task.load("base", build=False).index) == TINY_SITES
