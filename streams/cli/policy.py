"""``guetteur policy``: show the default detection policy, check a policy file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel

from detectors.policy import Policy, load_policy
from streams.cli.output import emit_record


@click.group()
def policy() -> None:
    """The detection policy: thresholds, windows, allowlists, role permissions (TOML)."""


@policy.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of TOML.")
@click.argument("file", required=False, type=click.Path(exists=True, path_type=Path))
def show(as_json: bool, file: Path | None) -> None:
    """Print the policy in effect: FILE over the defaults, or the defaults alone (as TOML)."""
    current = load_policy(file)
    if as_json:
        click.echo(json.dumps(current.model_dump(mode="json")))
        return
    click.echo(render_toml(current))


@policy.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def check(file: Path, as_json: bool) -> None:
    """Validate FILE; every unknown key or bad value is reported with its path."""
    current = load_policy(file)
    changed = _differences(current.model_dump(mode="json"), Policy().model_dump(mode="json"))
    emit_record(
        {"file": str(file), "valid": True, "settings_changed": changed or "none"},
        as_json=as_json,
        title="policy check",
    )


def _differences(value: dict[str, Any], default: dict[str, Any], prefix: str = "") -> list[str]:
    changed = []
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, dict) and isinstance(default.get(key), dict) and item:
            changed += _differences(item, default[key], path + ".")
        elif item != default.get(key):
            changed.append(path)
    return changed


def render_toml(model: BaseModel) -> str:
    """The policy as TOML, each setting under its description (a small writer: our shapes only)."""
    lines = ["# Guetteur detection policy: the defaults. A file needs only what it changes.", ""]
    _render_section(model, [], lines)
    return "\n".join(lines).rstrip() + "\n"


def _render_section(model: BaseModel, path: list[str], lines: list[str]) -> None:
    nested: list[tuple[str, BaseModel | dict[str, Any]]] = []
    fields = type(model).model_fields
    for name, info in fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            nested.append((name, value))
            continue
        dumped = model.model_dump(mode="json")[name]
        if isinstance(dumped, dict):
            nested.append((name, dumped))
            continue
        if info.description:
            lines.append(f"# {info.description}")
        # TOML has no null: an unset value is shown commented out (loading it back, unset).
        lines.append(f"# {name} = (unset)" if dumped is None else f"{name} = {_toml_value(dumped)}")
    for name, value in nested:
        section = [*path, name]
        lines += ["", f"[{'.'.join(section)}]"]
        description = fields[name].description
        if description:
            lines.append(f"# {description}")
        if isinstance(value, BaseModel):
            _render_section(value, section, lines)
        else:
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]


def _toml_key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(value)
