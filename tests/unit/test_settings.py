from __future__ import annotations

import pytest

from streams.settings import ConfigError, Settings, StackSettings, load


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUETTEUR_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("GUETTEUR_STACK_KAFKA_PORT", "19092")
    settings = load(Settings)
    assert settings.kafka_servers() == "127.0.0.1:19092"
    assert settings.elasticsearch_url() == "http://127.0.0.1:9200"


def test_explicit_addresses_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUETTEUR_KAFKA_BOOTSTRAP", "kafka:19092")
    assert load(Settings).kafka_servers() == "kafka:19092"


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUETTEUR_STACK_ES_PORT", "ninety-two hundred")
    with pytest.raises(
        ConfigError, match=r"GUETTEUR_STACK_ES_PORT: Input should be a valid integer"
    ):
        load(StackSettings)


def test_out_of_range_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUETTEUR_WEB_PORT", "70000")
    with pytest.raises(ConfigError, match="GUETTEUR_WEB_PORT"):
        load(Settings)


@pytest.mark.parametrize("months", ["5", "13"])
def test_retention_outside_the_cnil_range_is_refused(
    monkeypatch: pytest.MonkeyPatch, months: str
) -> None:
    monkeypatch.setenv("GUETTEUR_RETENTION_MONTHS", months)
    with pytest.raises(ConfigError, match="GUETTEUR_RETENTION_MONTHS: Input should be"):
        load(Settings)
