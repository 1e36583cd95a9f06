from __future__ import annotations

import pydantic
import pytest
from kaizend.core.errors import ConfigError
from kaizend.models.llm.config import PROFILES, LlmTrainingConfig, profile


def test_profiles_quick_and_full_exist_and_differ() -> None:
    assert set(PROFILES) == {"quick", "full"}
    assert profile("full").lora_rank > profile("quick").lora_rank


def test_unknown_profile_names_the_key_and_the_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        profile("fast")
    assert caught.value.key == "profile"
    assert "quick" in str(caught.value)


def test_config_is_frozen_and_rejects_unknown_fields() -> None:
    config = LlmTrainingConfig()
    with pytest.raises(pydantic.ValidationError):
        config.lora_rank = 4  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        LlmTrainingConfig(lora_rnak=4)  # type: ignore[call-arg]


def test_every_field_is_documented() -> None:
    for name, field in LlmTrainingConfig.model_fields.items():
        assert field.description, name
