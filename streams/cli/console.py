"""``guetteur console`` (the API and web console) and ``guetteur token`` (its users)."""

from __future__ import annotations

import click

from streams.cli.output import emit_record, stderr
from streams.console import tokens
from streams.elastic import sync_client
from streams.history.templates import prepare
from streams.pseudonym import load_pseudonymizer
from streams.settings import Settings, load


@click.command()
@click.option("--host", help="Listen address (default GUETTEUR_CONSOLE_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default GUETTEUR_CONSOLE_PORT, 6080).")
def console(host: str | None, port: int | None) -> None:
    """Serve the HTTP API and the web console (searches, reports, alert triage)."""
    from aiohttp import web

    from streams.console.api import create_api

    settings = load(Settings)
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
@click.option("--json", "as_json", is_flag=True)
def create(name: str, role: str, as_json: bool) -> None:
    """Create a token for NAME; it is shown once, only its hash is kept."""
    settings = load(Settings)
    client = sync_client(settings)
    prepare(client, settings)
    secret = tokens.create(client, settings, name, tokens.Role(role))
    emit_record({"name": name, "role": role, "token": secret}, as_json=as_json, title="new token")
    if not as_json:
        stderr.print("Keep the token now: it cannot be shown again.")
