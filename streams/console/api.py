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
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from elasticsearch import Elasticsearch, NotFoundError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters.common import MAX_RECORD_BYTES
from detectors.exceptions import DetectionException
from detectors.policy import load_policy
from streams import exceptions as live
from streams import metrics
from streams.audit import watch
from streams.audit.keyring import KeyMismatchError, patient_pseudonyms
from streams.audit.query import Filters, history_query
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
from streams.audit.search import search_page
from streams.console import tokens, triage
from streams.console.fhir import FhirReceiver
from streams.console.overview import overview as team_overview
from streams.console.params import alerts_query, error, json_object, moment, paging
from streams.console.tokens import Role, User
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC = resources.files("streams.console") / "static"
CHART_LIBRARY = Path(__file__).parent / "assets/node_modules/chart.js/dist/chart.umd.min.js"
USER = web.RequestKey("user", User)


def create_api(
    settings: Settings, client: Elasticsearch, pseudonymizer: Pseudonymizer
) -> web.Application:
    api = Console(settings, client, pseudonymizer)
    # A Bundle of audit records may be a few megabytes (aiohttp's default limit is 1 MiB).
    app = web.Application(middlewares=[api.authenticate], client_max_size=MAX_RECORD_BYTES)
    app.router.add_get("/", api.index)
    app.router.add_get("/metrics", api.metrics)
    app.router.add_get("/console.js", api.script)
    app.router.add_get("/vendor/chart.umd.min.js", api.chart_library)
    app.router.add_get("/api/overview", api.overview)
    app.router.add_get("/api/whoami", api.whoami)
    app.router.add_get("/api/search", api.search)
    app.router.add_get("/api/reports/{kind}", api.report)
    app.router.add_get("/api/alerts", api.alerts)
    app.router.add_post("/api/alerts/{alert_id}/triage", api.triage)
    app.router.add_get("/api/exceptions", api.list_exceptions)
    app.router.add_post("/api/exceptions", api.add_exception)
    app.router.add_delete("/api/exceptions/{exception_id}", api.delete_exception)
    FhirReceiver(settings, load_policy(settings.policy_file).mapping, api.require).install(app)
    return app


class Console:
    def __init__(self, settings: Settings, client: Elasticsearch, pseudonymizer: Pseudonymizer):
        self.settings = settings
        self.client = client
        self.pseudonymizer = pseudonymizer

    # -- authentication ------------------------------------------------------------------------

    @web.middleware
    async def authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(("/api/", "/fhir")) or request.path == "/fhir/metadata":
            return await handler(request)
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        found: User | tokens.Refusal = tokens.Refusal("missing")
        if token:
            found = await asyncio.to_thread(tokens.lookup, self.client, self.settings, token)
        if isinstance(found, tokens.Refusal):
            _denied(request, 401, found.reason, found.name)
            raise error(
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
            raise error(web.HTTPForbidden, f"role {user.role.value} may not do this ({needed})")
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

    async def chart_library(self, request: web.Request) -> web.Response:
        """Chart.js, fetched from npm at set-up (``make console-assets``), served from here:
        the console loads nothing from a CDN."""
        if not CHART_LIBRARY.is_file():
            raise error(web.HTTPServiceUnavailable, "run `make console-assets` (npm) first")
        return web.Response(body=CHART_LIBRARY.read_bytes(), content_type="application/javascript")

    async def overview(self, request: web.Request) -> web.Response:
        """The team's numbers over ``from``..``to`` (event time; default the last 30 days)."""
        self.require(request, Role.ANALYST)
        end = moment(request, "to") or datetime.now(UTC)
        start = moment(request, "from") or end - timedelta(days=30)
        if start > end:
            raise error(web.HTTPBadRequest, "from is after to; swap them")
        numbers = await asyncio.to_thread(team_overview, self.client, self.settings, start, end)
        return web.json_response(numbers)

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
            raise error(web.HTTPConflict, str(exc)) from None
        return pseudonyms

    async def _filters(self, request: web.Request) -> tuple[Filters, str | None]:
        query = request.query
        raw = query.get("patient") or None
        patients = await self._patients(raw)

        def when(name: str) -> datetime | None:
            value = query.get(name)
            if not value:
                return None
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                raise error(web.HTTPBadRequest, f"{name}: not an ISO date") from None

        filters = Filters(
            patients=patients,
            actor=query.get("actor") or None,
            practice=query.get("practice") or None,
            session=query.get("session") or None,
            ticket=query.get("ticket") or None,
            action=tuple(query.getall("action", [])),
            category=tuple(query.getall("category", [])),
            source=tuple(query.getall("source", [])),
            start=when("from"),
            end=when("to"),
            # An incident's evidence, by event id (the console's incident view).
            extra={"event.id": query.getall("event")} if "event" in query else {},
        )
        return filters, raw

    async def search(self, request: web.Request) -> web.Response:
        """A page of accesses (``size``, default 1000) and ``next``, the cursor of the following
        page (``after=``), null on the last: no answer stops short silently at 10,000."""
        user = self.require(request, Role.AUDITOR)
        filters, raw = await self._filters(request)
        size, after = paging(request)

        def run() -> tuple[list[dict[str, Any]], str | None]:
            docs, cursor = search_page(
                self.client,
                self.settings.history_index,
                history_query(filters),
                [{"@timestamp": "asc"}, {"event.id": "asc"}],
                size,
                after,
            )
            rows = [history_row(doc) for doc in docs]
            flagged = flags(self.client, self.settings, [row["event_id"] for row in rows])
            return [{**row, "alerts": flagged.get(row["event_id"])} for row in rows], cursor

        rows, cursor = await asyncio.to_thread(run)
        await self._record(user, "search", filters, len(rows), raw)
        return web.json_response({"count": len(rows), "rows": rows, "next": cursor})

    async def report(self, request: web.Request) -> web.Response:
        user = self.require(request, Role.AUDITOR)
        kind = request.match_info["kind"]
        if kind not in REPORTS:
            raise error(web.HTTPNotFound, f"no {kind} report (patient, actor or practice)")
        needed, title = REPORTS[kind]
        filters, raw = await self._filters(request)
        if not request.query.get(needed):
            raise error(web.HTTPBadRequest, f"{needed} is required")
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
            raise error(kind_of_error, str(exc)) from None

    # -- alerts and triage -----------------------------------------------------------------------

    async def alerts(self, request: web.Request) -> web.Response:
        """Incidents, newest first, a page at a time (``size``, ``after``, ``next``), filtered
        by triage ``status`` (default open), ``rule``, ``severity``, ``actor``, ``practice`` and
        ``from``/``to`` (event time); each with its evidence ids and its triage history."""
        self.require(request, Role.ANALYST)
        query = alerts_query(request)
        size, after = paging(request)

        def run() -> tuple[list[dict[str, Any]], str | None]:
            found, cursor = search_page(
                self.client,
                self.settings.alerts_index,
                query,
                [{"timestamp": "desc"}, {"alert_id": "asc"}],
                size,
                after,
            )
            ids = [a["alert_id"] for a in found]
            histories = triage.histories(self.client, self.settings, ids)
            for alert in found:
                alert.setdefault("triage", {"status": "open"})
                alert["triage_history"] = histories.get(alert["alert_id"], [])
            return found, cursor

        alerts, cursor = await asyncio.to_thread(run)
        return web.json_response({"count": len(alerts), "alerts": alerts, "next": cursor})

    async def triage(self, request: web.Request) -> web.Response:
        """A triage decision; a false positive may carry ``exception`` ({"scope": [fields of
        the incident to keep: actor_id, practice_id...], "expires": ISO date, and any explicit
        destination or data_category}), which becomes an exception made from this incident."""
        user = self.require(request, Role.ANALYST)
        body = await json_object(request, "{status, comment[, exception]}")
        alert_id = request.match_info["alert_id"]
        try:
            status = triage.Status(body.get("status", ""))
            comment = str(body.get("comment", ""))
            exception = None
            if body.get("exception") is not None:
                if status is not triage.Status.FALSE_POSITIVE:
                    raise ValueError("an exception is made from a false positive only")
                exception = await asyncio.to_thread(
                    self._exception_from, alert_id, body["exception"], comment, user.name
                )
            record = await asyncio.to_thread(
                triage.change, self.client, self.settings, alert_id, status, user.name, comment
            )
        except ValueError as exc:  # an unknown status, a TriageError or an ExceptionError
            raise error(web.HTTPBadRequest, str(exc)) from None
        if exception is not None:
            await asyncio.to_thread(live.create, self.client, self.settings, exception)
            record["exception"] = exception.model_dump(mode="json")
        return web.json_response(record)

    def _exception_from(
        self, alert_id: str, wanted: Any, reason: str, by: str
    ) -> DetectionException:
        if not isinstance(wanted, dict):
            raise live.ExceptionError("exception: a JSON object {scope, expires}")
        try:
            alert = self.client.get(index=self.settings.alerts_index, id=alert_id)["_source"]
        except NotFoundError:
            raise live.ExceptionError(f"no alert {alert_id}") from None
        scope = wanted.get("scope", [])
        if not isinstance(scope, list) or not set(scope) <= {"actor_id", "practice_id", "alert_id"}:
            raise live.ExceptionError("exception.scope: a list of actor_id, practice_id, alert_id")
        fields = {name: alert.get(name) for name in scope}
        explicit = ("destination", "data_category", "expires", "starts")
        fields |= {k: wanted[k] for k in explicit if k in wanted}
        fields |= {"rule_id": alert["rule_id"], "reason": reason, "from_alert": alert_id}
        return live.new_exception(fields, by)

    async def list_exceptions(self, request: web.Request) -> web.Response:
        self.require(request, Role.ANALYST)
        everything = request.query.get("all") in ("1", "true")
        current = await asyncio.to_thread(live.read_all, self.settings)
        now = datetime.now(UTC)
        found = [
            e.model_dump(mode="json") for e in current.by_id.values() if everything or e.active(now)
        ]
        return web.json_response({"count": len(found), "exceptions": found})

    async def add_exception(self, request: web.Request) -> web.Response:
        user = self.require(request, Role.ANALYST)
        body = await json_object(request, "{rule_id, scope fields, reason, expires}")
        try:
            exception = live.new_exception(body, user.name)
        except live.ExceptionError as exc:
            raise error(web.HTTPBadRequest, str(exc)) from None
        await asyncio.to_thread(live.create, self.client, self.settings, exception)
        return web.json_response(exception.model_dump(mode="json"), status=201)

    async def delete_exception(self, request: web.Request) -> web.Response:
        user = self.require(request, Role.ANALYST)
        exception_id = request.match_info["exception_id"]
        why = request.query.get("reason", "")
        try:
            gone = await asyncio.to_thread(
                live.delete, self.client, self.settings, exception_id, user.name, why
            )
        except live.ExceptionError as exc:
            raise error(web.HTTPBadRequest, str(exc)) from None
        return web.json_response(gone.model_dump(mode="json"))


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
