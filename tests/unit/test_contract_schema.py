"""The schema generated from our models says what the contract's schema says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from detectors.schema import access_event_schema
from streams.decode import Reason, Rejected, decode

CONTRACT = Path(__file__).resolve().parents[3] / "shared" / "contract" / "access-event.schema.json"
# Annotations that do not change what validates.
NOISE = {"title", "description", "$schema", "$id", "$defs"}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _inline(merged, defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _normalise(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _normalise(v) for k, v in node.items() if k not in NOISE}
        if "enum" in out:
            out.pop("type", None)  # an enum of strings is already a string
        if out.get("type") == "object" and out.get("additionalProperties") is True:
            out.pop("additionalProperties")  # the JSON Schema default
        if "required" in out:
            out["required"] = sorted(out["required"])
        return out
    if isinstance(node, list):
        return [_normalise(v) for v in node]
    return node


def test_generated_schema_agrees_with_the_contract() -> None:
    generated = access_event_schema()
    ours = _normalise(_inline(generated, generated.get("$defs", {})))
    contract = _normalise(json.loads(CONTRACT.read_text()))
    assert ours == contract


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (
            b'{"event_id":"e","timestamp":"2026-11-16T10:00:00Z","source":"x","action":"view",'
            b'"actor":{"id":"a","role":"secretary"},"practice_id":null}',
            "practice_id",
        ),
        (
            b'{"event_id":"e","timestamp":"2026-11-16T10:00:00Z","source":"x","action":"view",'
            b'"actor":{"id":"a","role":"secretary","country":null}}',
            "actor.country",
        ),
    ],
)
def test_explicit_nulls_are_rejected_naming_the_field(raw: bytes, field: str) -> None:
    result = decode(raw)
    assert isinstance(result, Rejected)
    assert result.reason is Reason.CONTRACT_VIOLATION
    assert result.detail == f"{field}: null is not allowed (omit the field instead)"
