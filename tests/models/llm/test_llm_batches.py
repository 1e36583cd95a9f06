from __future__ import annotations

import random

from kaizend.models.llm.batches import IGNORE_INDEX, Encoded, batch_order, collate, padding_share


def _lengths(count: int = 640) -> list[int]:
    rng = random.Random(5)
    return [rng.randint(12, 60) for _ in range(count)]


def test_length_grouping_pads_far_less_than_random_batches() -> None:
    lengths = _lengths()
    grouped = batch_order(lengths, 16, seed=0, group_by_length=True, group_size=40)
    plain = batch_order(lengths, 16, seed=0, group_by_length=False)
    assert padding_share(grouped, lengths) < padding_share(plain, lengths) / 4


def test_every_example_once_per_epoch_and_order_depends_only_on_seed() -> None:
    lengths = _lengths(100)
    order = batch_order(lengths, 16, seed=7)
    assert sorted(index for batch in order for index in batch) == list(range(100))
    assert order == batch_order(lengths, 16, seed=7)
    assert order != batch_order(lengths, 16, seed=8)


def test_collate_pads_to_the_batch_and_labels_only_the_target() -> None:
    batch = collate([Encoded("a", (5, 6, 7, 8), 2), Encoded("b", (5, 9, 2), 2)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [5, 9, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    ignore = IGNORE_INDEX
    assert batch["labels"].tolist() == [[ignore, ignore, 7, 8], [ignore, ignore, 2, ignore]]
