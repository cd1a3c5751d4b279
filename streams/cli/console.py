"""``guetteur console`` (the API and web console) and ``guetteur token`` (its users)."""

from __future__ import annotations

import click

from streams.cli.output import emit, emit_record, stderr
from streams.console import tokens
from streams.elastic import sync_client
from streams.history.templates import prepare
from streams.pseudonym import load_pseudonymizer
from streams.settings import Settings, load

TOKEN_COLUMNS = ["id", "name", "role", "status", "expires"]


@click.command()
@click.option("--host", help="Listen address (default GUETTEUR_CONSOLE_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default GUETTEUR_CONSOLE_PORT, 6080).")
def console(host: str | None, port: int | None) -> None:
    """Serve the HTTP API and the web console (searches, reports, alert triage)."""
    import logging.config

    from aiohttp import web

    from streams.console.api import create_api
    from streams.logs import logging_config

    settings = load(Settings)
    logging.config.dictConfig(logging_config(settings.log_level))  # JSON lines, like the worker
    client = sync_client(settings)
    prepare(client, settings)
    pseudonymizer = load_pseudonymizer(settings, settings.demo_key_file())
    app = create_api(settings, client, pseudonymizer)
    host, port = host or settings.console_host, port or settings.console_port
    stderr.print(f"console on http://{host}:{port}/ (API under /api/)")
    web.run_app(app, host=host, port=port, print=None)


@click.group()
def token() -> None:
    """API and console users (each a token, stored hashed)."""


@token.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice([r.value for r in tokens.Role]),
    required=True,
    help="What it may do.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    help="Valid this many days (default GUETTEUR_TOKEN_DAYS, 90).",
)
@click.option("--json", "as_json", is_flag=True)
def create(name: str, role: str, days: int | None, as_json: bool) -> None:
    """Create a token for NAME; it is shown once, only its hash is kept."""
    settings = load(Settings)
    client = sync_client(settings)
    prepare(client, settings)
    secret = tokens.create(client, settings, name, tokens.Role(role), days)
    row = next(t for t in tokens.listing(client, settings) if t["id"] == tokens.digest(secret)[:12])
    emit_record({**row, "token": secret}, as_json=as_json, title="new token")
    if not as_json:
        stderr.print("Keep the token now: it cannot be shown again.")


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_tokens(as_json: bool) -> None:
    """Every token: id (hash prefix), name, role, status (valid, expired, revoked), dates."""
    settings = load(Settings)
    rows = tokens.listing(sync_client(settings), settings)
    emit(rows, TOKEN_COLUMNS, as_json=as_json, title=f"{len(rows)} tokens")


@token.command("revoke")
@click.argument("token_id")
@click.option("--json", "as_json", is_flag=True)
def revoke(token_id: str, as_json: bool) -> None:
    """Revoke the token with TOKEN_ID (its id from `guetteur token list`): refused from now on."""
    settings = load(Settings)
    try:
        row = tokens.revoke(sync_client(settings), settings, token_id)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    emit_record(row, as_json=as_json, title="token revoked")
