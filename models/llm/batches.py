"""Training examples as token ids, and the order and padding of batches.

An encoded example is the prompt's ids followed by the target's ids and the end token; the
loss covers only the target part. Batches group examples of similar length (sorted inside
a window of `length_group_size` batches, the batches then shuffled) and pad to the longest
example of the batch only.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kaizend.models.llm.codec import Codec

IGNORE_INDEX = -100
"""Label of positions that carry no loss (prompt and padding), as torch's cross-entropy
expects."""


@dataclass(frozen=True)
class Encoded:
    """One example as ids; `prompt_len` ids of prompt, then target ids ending with the end
    token."""

    example_id: str
    input_ids: tuple[int, ...]
    prompt_len: int

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_example(
    tokenizer: Any,
    example: Mapping[str, Any],
    codec: Codec,
) -> Encoded:
    """Tokenise one `{id, text, expected}` example the way serving will see it.

    Prompt and target are tokenised separately, as at serving time the model continues
    the prompt's ids; joining the strings first could merge tokens across the boundary.
    """
    prompt = tokenizer(codec.prompt(example["text"]), add_special_tokens=False).input_ids
    target = tokenizer(codec.encode(example["expected"]), add_special_tokens=False).input_ids
    ids = (*prompt, *target, tokenizer.eos_token_id)
    return Encoded(str(example.get("id", "")), tuple(ids), len(prompt))


def encode_examples(
    tokenizer: Any,
    examples: Iterable[Mapping[str, Any]],
    codec: Codec,
) -> list[Encoded]:
    """`encode_example` over many examples, keeping their order."""
    return [encode_example(tokenizer, example, codec) for example in examples]


def batch_order(
    lengths: Sequence[int],
    batch_size: int,
    *,
    seed: int,
    group_by_length: bool = True,
    group_size: int = 64,
) -> list[list[int]]:
    """Index batches for one epoch, deterministic in `seed`.

    With `group_by_length`, indices are shuffled, cut into windows of `group_size` batches,
    sorted by length inside each window and cut into batches; the batches are then shuffled
    so training does not see short examples first. Without it, plain random batches.
    """
    rng = random.Random(seed)
    indices = list(range(len(lengths)))
    rng.shuffle(indices)
    if group_by_length:
        window = batch_size * group_size
        grouped: list[int] = []
        for start in range(0, len(indices), window):
            grouped.extend(sorted(indices[start : start + window], key=lengths.__getitem__))
        indices = grouped
    batches = [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch to its longest example: input_ids, attention_mask and labels.

    Labels hold the target ids and `IGNORE_INDEX` elsewhere; they are *not* shifted (the
    next-token shift happens in the loss, as in transformers).
    """
    import torch

    width = max(len(item) for item in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for row, item in enumerate(batch):
        ids = torch.tensor(item.input_ids, dtype=torch.long)
        input_ids[row, : len(ids)] = ids
        attention[row, : len(ids)] = 1
        labels[row, item.prompt_len : len(ids)] = ids[item.prompt_len :]
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def padding_share(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of padding tokens among all tokens the batches feed the model."""
    fed = real = 0
    for batch in batches:
        width = max(lengths[index] for index in batch)
        fed += width * len(batch)
        real += sum(lengths[index] for index in batch)
    return 1 - real / fed if fed else 0.0
