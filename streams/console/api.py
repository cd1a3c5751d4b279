"""The console's HTTP API (aiohttp), and the static web console on top of it.

Every request but the console's own files and ``/metrics`` needs ``Authorization: Bearer
<token>``: no token, an unknown, expired or revoked one is 401, a role without the right is 403;
each refusal is logged and counted (``guetteur_console_denied_total``), so a burst of them pages.
Searches and reports are recorded as access events under the token's user and role before any
data is returned: if the record cannot be written, the request fails (fail-closed). Triage
changes are recorded in the triage index.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib import resources
from typing import Any

from aiohttp import web
from elasticsearch import Elasticsearch
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import metrics
from streams.audit import watch
from streams.audit.keyring import KeyMismatchError, patient_pseudonyms
from streams.audit.query import Filters
from streams.audit.report import (
    COLUMNS,
    REPORTS,
    build_report,
    flags,
    history_row,
    render_html,
    scoped,
    write_csv,
)
from streams.audit.search import search_all, search_history
from streams.console import tokens, triage
from streams.console.tokens import Role, User
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC = resources.files("streams.console") / "static"
USER = web.RequestKey("user", User)

MAX_ROWS = 10_000


def create_api(
    settings: Settings, client: Elasticsearch, pseudonymizer: Pseudonymizer
) -> web.Application:
    api = Console(settings, client, pseudonymizer)
    app = web.Application(middlewares=[api.authenticate])
    app.router.add_get("/", api.index)
    app.router.add_get("/metrics", api.metrics)
    app.router.add_get("/console.js", api.script)
    app.router.add_get("/api/whoami", api.whoami)
    app.router.add_get("/api/search", api.search)
    app.router.add_get("/api/reports/{kind}", api.report)
    app.router.add_get("/api/alerts", api.alerts)
    app.router.add_post("/api/alerts/{alert_id}/triage", api.triage)
    return app


class Console:
    def __init__(self, settings: Settings, client: Elasticsearch, pseudonymizer: Pseudonymizer):
        self.settings = settings
        self.client = client
        self.pseudonymizer = pseudonymizer

    # -- authentication ------------------------------------------------------------------------

    @web.middleware
    async def authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        found: User | tokens.Refusal = tokens.Refusal("missing")
        if token:
            found = await asyncio.to_thread(tokens.lookup, self.client, self.settings, token)
        if isinstance(found, tokens.Refusal):
            _denied(request, 401, found.reason, found.name)
            raise _error(
                web.HTTPUnauthorized,
                "a valid API token is required (Authorization: Bearer <token>); tokens expire "
                "and can be revoked: an admin creates one with `guetteur token create NAME "
                "--role ROLE`",
            )
        request[USER] = found
        return await handler(request)

    @staticmethod
    def require(request: web.Request, *roles: Role) -> User:
        user = request[USER]
        if not user.may(*roles):
            _denied(request, 403, f"role {user.role.value}", user.name)
            needed = " or ".join(r.value for r in (*roles, Role.ADMIN))
            raise _error(web.HTTPForbidden, f"role {user.role.value} may not do this ({needed})")
        return user

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus: counts only (denials, requests), nothing about the data."""
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- console -------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(
            text=STATIC.joinpath("index.html").read_text(), content_type="text/html"
        )

    async def script(self, request: web.Request) -> web.Response:
        return web.Response(
            text=STATIC.joinpath("console.js").read_text(), content_type="application/javascript"
        )

    async def whoami(self, request: web.Request) -> web.Response:
        user = request[USER]
        return web.json_response({"name": user.name, "role": user.role.value})

    # -- searches and reports --------------------------------------------------------------------

    async def _patients(self, raw: str | None) -> tuple[str, ...]:
        """The patient's pseudonyms under the keys the history holds; a keyring matching none
        of them is refused (409), never answered with "no access"."""
        if not raw:
            return ()
        try:
            pseudonyms, _ = await asyncio.to_thread(
                patient_pseudonyms, self.client, self.settings, self.pseudonymizer, raw
            )
        except KeyMismatchError as exc:
            raise _error(web.HTTPConflict, str(exc)) from None
        return pseudonyms

    async def _filters(self, request: web.Request) -> tuple[Filters, str | None]:
        query = request.query
        raw = query.get("patient") or None
        patients = await self._patients(raw)

        def moment(name: str) -> datetime | None:
            value = query.get(name)
            if not value:
                return None
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                raise _error(web.HTTPBadRequest, f"{name}: not an ISO date") from None

        filters = Filters(
            patients=patients,
            actor=query.get("actor") or None,
            practice=query.get("practice") or None,
            session=query.get("session") or None,
            ticket=query.get("ticket") or None,
            action=tuple(query.getall("action", [])),
            category=tuple(query.getall("category", [])),
            source=tuple(query.getall("source", [])),
            start=moment("from"),
            end=moment("to"),
        )
        return filters, raw

    async def search(self, request: web.Request) -> web.Response:
        user = self.require(request, Role.AUDITOR)
        filters, raw = await self._filters(request)

        def run() -> list[dict[str, Any]]:
            docs = search_history(self.client, self.settings, filters, MAX_ROWS)
            rows = [history_row(doc) for doc in docs]
            flagged = flags(self.client, self.settings, [row["event_id"] for row in rows])
            return [{**row, "alerts": flagged.get(row["event_id"])} for row in rows]

        rows = await asyncio.to_thread(run)
        await self._record(user, "search", filters, len(rows), raw)
        return web.json_response({"count": len(rows), "rows": rows})

    async def report(self, request: web.Request) -> web.Response:
        user = self.require(request, Role.AUDITOR)
        kind = request.match_info["kind"]
        if kind not in REPORTS:
            raise _error(web.HTTPNotFound, f"no {kind} report (patient, actor or practice)")
        needed, title = REPORTS[kind]
        filters, raw = await self._filters(request)
        if not request.query.get(needed):
            raise _error(web.HTTPBadRequest, f"{needed} is required")
        filters = scoped(kind, filters)
        rows = await asyncio.to_thread(build_report, self.client, self.settings, filters)
        await self._record(user, f"{kind} report", filters, len(rows), raw)
        fmt = request.query.get("format", "json")
        if fmt == "html":
            return web.Response(text=render_html(title, "", rows), content_type="text/html")
        if fmt == "csv":
            out = io.StringIO()
            write_csv(rows, COLUMNS, out)
            return web.Response(text=out.getvalue(), content_type="text/csv")
        return web.json_response({"count": len(rows), "rows": rows})

    async def _record(
        self, user: User, kind: str, filters: Filters, results: int, raw: str | None
    ) -> None:
        """Before any data goes out: recorded under the token's user and role, or an error."""
        looker = watch.Looker(user.name, user.role.value, "token")
        index = self.settings.history_index
        event = watch.audit_event(looker, kind, filters, results, index, raw)
        try:
            await asyncio.to_thread(watch.record, self.settings, event)
        except watch.AuditNotRecordedError as exc:
            kind_of_error = web.HTTPBadRequest if exc.invalid else web.HTTPServiceUnavailable
            raise _error(kind_of_error, str(exc)) from None

    # -- alerts and triage -----------------------------------------------------------------------

    async def alerts(self, request: web.Request) -> web.Response:
        self.require(request, Role.ANALYST)
        wanted = request.query.get("status", "open")
        known = [status.value for status in triage.Status]
        if wanted not in (*known, "all"):
            raise _error(web.HTTPBadRequest, f"status: one of {', '.join(known)} or all")

        def run() -> list[dict[str, Any]]:
            found = list(
                search_all(self.client, self.settings.alerts_index, {"match_all": {}}, MAX_ROWS)
            )
            states = triage.statuses(self.client, self.settings, [a["alert_id"] for a in found])
            for alert in found:
                alert["triage"] = states.get(alert["alert_id"], {"status": "open"})
            return [a for a in found if wanted == "all" or a["triage"]["status"] == wanted]

        alerts = await asyncio.to_thread(run)
        alerts.sort(key=lambda a: a["timestamp"], reverse=True)
        return web.json_response({"count": len(alerts), "alerts": alerts})

    async def triage(self, request: web.Request) -> web.Response:
        user = self.require(request, Role.ANALYST)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _error(web.HTTPBadRequest, "the body must be a JSON object: {status, comment}")
        try:
            status = triage.Status(body.get("status", ""))
            record = await asyncio.to_thread(
                triage.change,
                self.client,
                self.settings,
                request.match_info["alert_id"],
                status,
                user.name,
                str(body.get("comment", "")),
            )
        except ValueError as exc:  # an unknown status, or a TriageError
            raise _error(web.HTTPBadRequest, str(exc)) from None
        return web.json_response(record)


def _denied(request: web.Request, status: int, reason: str, name: str | None) -> None:
    metrics.CONSOLE_DENIED.labels(str(status)).inc()
    log.warning(
        "console request denied",
        extra={
            "http.response.status_code": status,
            "url.path": request.path,
            "user.name": name,
            "client.ip": request.remote,
            "reason": reason,
        },
    )


def _error(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": message}), content_type="application/json")
