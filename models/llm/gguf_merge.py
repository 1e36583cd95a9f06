"""A parser version as one GGUF file: the base GGUF with the version's LoRA adapter merged in.

Ollama 0.34.1 and later refuse LoRA adapters, but every Ollama (and llama.cpp) loads a GGUF
file, so ``ollama.publish = "merged"`` uploads this file instead of base plus adapter.

For each adapted linear layer the update ``scale * B @ A`` (scale ``lora_alpha / r``, or
``lora_alpha / sqrt(r)`` with rsLoRA) is added to the base tensor: dequantized from its GGUF
type (Q4_1 for the packaged SmolLM2), stored as F16; every other tensor and all metadata are
copied byte for byte. Names map from Hugging Face to GGUF (``layers.3.self_attn.q_proj`` ->
``blk.3.attn_q``), and the query and key updates get the row permutation llama.cpp's converter
applies to those weights for its rotary layout. Only the ``llama`` architecture is handled (the
packaged SmolLM2 is one); `MergeError` says so for any other.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

from kaizend.core.errors import KaizendError

log = logging.getLogger(__name__)

HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
"""Llama linear layers (below ``model.layers.<i>.``) -> GGUF tensor names (below ``blk.<i>.``)."""

_LORA_KEY = re.compile(r"layers\.(\d+)\.(\w+\.\w+)\.lora_([AB])\.weight$")


class MergeError(KaizendError, ValueError):
    """The adapter cannot be merged into that GGUF file; the message says why."""


def permute(weights: Any, n_head: int, n_head_kv: int | None = None) -> Any:
    """Reorder the rows of a query or key weight as llama.cpp's Hugging Face converter does
    (the halves of each head's rotary dimensions interleaved)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def lora_updates(adapter_dir: Path) -> dict[str, Any]:
    """Every adapted layer's update ``scale * B @ A`` (float32, Hugging Face orientation), by
    GGUF tensor name."""
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("use_dora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise MergeError("DoRA and per-layer ranks or alphas are not supported by the merge")
    rank, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    factors: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in load_file(str(adapter_dir / "adapter_model.safetensors")).items():
        match = _LORA_KEY.search(key)
        if match is None or match.group(2) not in HF_TO_GGUF:
            raise MergeError(f"adapter tensor {key!r} is not a LoRA factor of a Llama layer")
        layer, module, which = match.groups()
        factors.setdefault((layer, module), {})[which] = value.astype(np.float32)
    updates = {}
    for (layer, module), pair in factors.items():
        if set(pair) != {"A", "B"}:
            raise MergeError(f"layer {layer} {module}: the adapter lacks one of its two factors")
        updates[f"blk.{layer}.{HF_TO_GGUF[module]}.weight"] = scale * (pair["B"] @ pair["A"])
    return updates


def merge_adapter(base_gguf: Path, adapter_dir: Path, out: Path) -> Path:
    """Write the GGUF file `out`: `base_gguf` with the peft adapter in `adapter_dir` merged."""
    import gguf
    import numpy as np

    started = time.perf_counter()
    reader = gguf.GGUFReader(str(base_gguf))
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    if arch != "llama":
        raise MergeError(f"{base_gguf} is a {arch!r} model; merging handles 'llama' only")
    n_head = reader.fields[f"{arch}.attention.head_count"].contents()
    kv_field = reader.fields.get(f"{arch}.attention.head_count_kv")
    n_head_kv = kv_field.contents() if kv_field is not None else n_head
    updates = lora_updates(adapter_dir)
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    missing = sorted(set(updates) - set(tensors))
    if missing:
        raise MergeError(f"{base_gguf} has no tensor {missing[0]}: not the adapter's base")

    writer = gguf.GGUFWriter(str(out), arch)
    for field in reader.fields.values():
        # The writer adds the architecture and the GGUF.* header fields itself.
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    for tensor in reader.tensors:
        if tensor.name in updates:
            shape = updates[tensor.name].shape
            writer.add_tensor_info(tensor.name, shape, np.float16, math.prod(shape) * 2)
        else:
            data = tensor.data
            writer.add_tensor_info(
                tensor.name, data.shape, data.dtype, data.nbytes, tensor.tensor_type
            )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        update = updates.get(tensor.name)
        if update is None:
            writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
            continue
        if tensor.name.endswith(".attn_q.weight"):
            update = permute(update, n_head, n_head)
        elif tensor.name.endswith(".attn_k.weight"):
            update = permute(update, n_head, n_head_kv)
        weights = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(update.shape)
        writer.write_tensor_data((weights + update).astype(np.float16))
    writer.close()
    log.info(
        "adapter merged into %s: %d tensors updated, %d bytes, in %.1f s",
        out, len(updates), out.stat().st_size, time.perf_counter() - started,
    )  # fmt: skip
    return out
