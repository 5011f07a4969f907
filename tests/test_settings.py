"""Settings: settings.toml, TASKEMIT_* overrides, clear errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from taskemit import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("TASKEMIT_") and name != "TASKEMIT_TEST_REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_without_a_file() -> None:
    settings = load_settings()
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.queue_name == "default" and settings.namespace == "taskemit"
    assert settings.queue_key == "{taskemit}:queue:default"
    assert settings.serializer == "json"
    assert settings.drain_on_exit is False


def test_shipped_settings_toml_matches_the_defaults() -> None:
    assert load_settings(ROOT / "settings.toml") == Settings.model_construct(
        **{name: field.get_default(call_default_factory=True) for name, field in Settings.model_fields.items()}
    )


def test_file_in_working_directory_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "settings.toml").write_text('queue_name = "from-file"\njob_timeout = 12\nlisteners = ["app.l"]\n')
    assert load_settings().queue_name == "from-file"
    monkeypatch.setenv("TASKEMIT_QUEUE_NAME", "from-env")
    monkeypatch.setenv("TASKEMIT_LISTENERS", "a.b, c.d")
    monkeypatch.setenv("TASKEMIT_DRAIN_ON_EXIT", "1")
    settings = load_settings()
    assert settings.queue_name == "from-env"
    assert settings.job_timeout == 12
    assert settings.listeners == ["a.b", "c.d"]
    assert settings.drain_on_exit is True


def test_taskemit_settings_names_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "prod.toml"
    other.write_text('redis_url = "redis://redis.internal:6380/2"\n')
    monkeypatch.setenv("TASKEMIT_SETTINGS", str(other))
    assert load_settings().redis_url == "redis://redis.internal:6380/2"
    monkeypatch.setenv("TASKEMIT_SETTINGS", str(tmp_path / "missing.toml"))
    with pytest.raises(FileNotFoundError, match=r"missing\.toml"):
        load_settings()


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("job_timeout = -1", "job_timeout"),
        ('serializer = "yaml"', "serializer"),
        ('redis_url = "http://x"', "redis_url"),
        ('on_unknown_event = "drop"', "on_unknown_event"),
        ("queu_name = 'typo'", "queu_name"),
    ],
)
def test_invalid_file_values_name_the_field(tmp_path: Path, content: str, field: str) -> None:
    (tmp_path / "settings.toml").write_text(content + "\n")
    with pytest.raises(ValidationError, match=field):
        load_settings()


def test_invalid_env_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKEMIT_MAX_JOBS", "many")
    with pytest.raises(ValidationError, match="max_jobs"):
        load_settings()
