"""Elasticsearch clients built from settings (URL, basic auth or API key, CA bundle)."""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch, Elasticsearch

from streams.settings import Settings


def _client_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "hosts": [settings.elasticsearch_url()],
        "request_timeout": 30,
        "retry_on_timeout": True,
        "max_retries": 3,
    }
    if settings.es_api_key is not None:
        options["api_key"] = settings.es_api_key.get_secret_value()
    elif settings.es_username and settings.es_password is not None:
        options["basic_auth"] = (settings.es_username, settings.es_password.get_secret_value())
    if settings.es_ca_certs is not None:
        options["ca_certs"] = str(settings.es_ca_certs)
    return options


def sync_client(settings: Settings) -> Elasticsearch:
    return Elasticsearch(**_client_options(settings))


def async_client(settings: Settings) -> AsyncElasticsearch:
    return AsyncElasticsearch(**_client_options(settings))
