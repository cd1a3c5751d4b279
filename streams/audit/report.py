"""Reports for auditors: each access in plain language, with its session's consent and the
alerts it raised. Rows come from the history (pseudonymised); nothing here needs a raw id."""

from __future__ import annotations

import csv
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import IO, Any

from elasticsearch import Elasticsearch

from streams.audit.query import Filters
from streams.audit.safe_output import csv_row
from streams.audit.search import search_all, search_history
from streams.console import triage
from streams.settings import Settings

VERBS = {
    "view": "viewed",
    "search": "searched",
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "export": "exported",
    "download": "downloaded",
    "print": "printed",
    "copy": "copied",
    "screenshot": "took a screenshot of",
    "record": "recorded",
}
COLUMNS = [
    "time",
    "actor",
    "role",
    "organization",
    "action",
    "category",
    "practice",
    "session",
    "ticket",
    "source",
    "outcome",
    "records",
    "destination",
    "patient",
    "event_id",
    "alerts",
    "consent",
    "sentence",
]


# kind -> (the filter it requires, the title): `guetteur report KIND` and /api/reports/KIND
REPORTS = {
    "patient": ("patient", "Accesses to a patient's data"),
    "actor": ("actor", "What one person or service accessed"),
    "practice": ("practice", "Data that left a practice (exports and downloads)"),
}


def scoped(kind: str, filters: Filters) -> Filters:
    """A report's own restriction on top of the asker's filters: a practice report is about
    data that left the practice (exports and downloads)."""
    if kind == "practice":
        return replace(filters, action=("export", "download"))
    return filters


def write_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str], out: IO[str]) -> None:
    """Cells a spreadsheet would run as formulas are written as text (see ``safe_output``)."""
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(csv_row(row) for row in rows)


def history_row(doc: dict[str, Any]) -> dict[str, Any]:
    health = doc.get("health", {})
    return {
        "time": doc["@timestamp"],
        "actor": doc["user"]["id"],
        "role": _role(doc),
        "organization": health.get("actor", {}).get("organization"),
        "action": doc["event"]["action"],
        "category": health.get("data_category"),
        "practice": health.get("practice", {}).get("id"),
        "session": health.get("session", {}).get("id"),
        "ticket": health.get("ticket", {}).get("id"),
        "source": doc["event"].get("provider"),
        "outcome": doc["event"].get("outcome"),
        "records": health.get("record_count"),
        "destination": health.get("export", {}).get("destination"),
        "patient": health.get("patient", {}).get("pseudonym"),
        "event_id": doc["event"]["id"],
    }


def _role(doc: dict[str, Any]) -> str:
    """The actor's role; for Guetteur's own looks, the role the looker proved (auditor...)."""
    looked = doc.get("health", {}).get("attributes", {}).get("guetteur_audit", {})
    if (
        doc["event"].get("provider") == "guetteur"
        and isinstance(looked, dict)
        and looked.get("role")
    ):
        return str(looked["role"])
    return str((doc["user"].get("roles") or [""])[0])


@dataclass(frozen=True)
class Consent:
    by: str
    at: str
    scope: list[str]
    mode: str | None

    def describe(self) -> str:
        scope = ", ".join(self.scope) if self.scope else "any data"
        mode = f"; {self.mode.replace('_', ' ')}" if self.mode else ""
        return f"consent given by {self.by} at {self.at} (scope: {scope}{mode})"


def sentence(row: dict[str, Any]) -> str:
    who = f"{row['actor']} ({row['role'].replace('_', ' ')}"
    who += f" of {row['organization']})" if row["organization"] else ")"
    verb = VERBS.get(row["action"], row["action"].replace("_", " "))
    what = f"{row['category']} data" if row["category"] else "data"
    if row["records"] and row["records"] > 1:
        what += f" ({row['records']} records)"
    text = f"{row['time']}: {who} {verb} {what}"
    if row["practice"]:
        text += f" at practice {row['practice']}"
    if row["destination"]:
        text += f", sent to {row['destination']}"
    if row["session"]:
        text += f", in session {row['session']}"
    if row["ticket"]:
        text += f" (ticket {row['ticket']})"
    if row["outcome"] and row["outcome"] != "success":
        text += f"; outcome: {row['outcome']}"
    if row.get("consent"):
        text += f", under the {row['consent']}"
    if row.get("alerts"):
        text += f". ALERT: {row['alerts']}"
    return text + "."


def build_report(
    client: Elasticsearch, settings: Settings, filters: Filters
) -> list[dict[str, Any]]:
    """The report's rows, oldest first: history rows with consent, alerts and a sentence."""
    rows = [history_row(doc) for doc in search_history(client, settings, filters)]
    alerts = flags(client, settings, [r["event_id"] for r in rows])
    consents = _consents(client, settings, {r["session"] for r in rows if r["session"]})
    for row in rows:
        row["alerts"] = alerts.get(row["event_id"])
        consent = consents.get(row["session"]) if row["session"] else None
        row["consent"] = consent.describe() if consent and row["role"] == "support_agent" else None
        row["sentence"] = sentence(row)
    return rows


def flags(client: Elasticsearch, settings: Settings, event_ids: Sequence[str]) -> dict[str, str]:
    """Per event id, the rules it raised an incident for, each with its triage outcome when
    an analyst decided ("support.no_consent (false positive by alex: covers Mondays)"): a
    report must not show a false positive as a standing accusation."""
    flagged: dict[str, dict[str, str]] = {}  # event id -> alert id -> rule id
    for start in range(0, len(event_ids), 1000):
        chunk = list(event_ids[start : start + 1000])
        query = {"terms": {"event_ids": chunk}}
        for alert in search_all(client, settings.alerts_index, query):
            for event_id in set(alert["event_ids"]) & set(chunk):
                flagged.setdefault(event_id, {})[alert["alert_id"]] = alert["rule_id"]
    alert_ids = sorted({alert_id for rules in flagged.values() for alert_id in rules})
    decided: dict[str, Any] = {}
    for start in range(0, len(alert_ids), 1000):
        decided |= triage.statuses(client, settings, alert_ids[start : start + 1000])
    return {
        event_id: ", ".join(
            sorted(_flag(rule, decided.get(alert_id)) for alert_id, rule in rules.items())
        )
        for event_id, rules in flagged.items()
    }


def _flag(rule_id: str, decision: dict[str, Any] | None) -> str:
    if not decision or decision["status"] == "open":
        return rule_id
    status = decision["status"].replace("_", " ")
    reason = f": {decision['comment']}" if decision.get("comment") else ""
    return f"{rule_id} ({status} by {decision['by']}{reason})"


def _consents(client: Elasticsearch, settings: Settings, sessions: set[str]) -> dict[str, Consent]:
    """The latest consent granted in each session (the one support worked under)."""
    if not sessions:
        return {}
    filters = Filters(extra={"health.session.id": sorted(sessions)}, action=("consent_granted",))
    found: dict[str, Consent] = {}
    for doc in search_history(client, settings, filters):
        health = doc.get("health", {})
        consent = health.get("consent", {})
        found[health["session"]["id"]] = Consent(
            by=doc["user"]["id"],
            at=doc["@timestamp"],
            scope=list(consent.get("scope", [])),
            mode=consent.get("mode"),
        )
    return found


def render_html(title: str, subtitle: str, rows: Iterable[dict[str, Any]]) -> str:
    """A printable page: one line per access, alerts highlighted; everything escaped."""
    items = []
    for row in rows:
        flag = ' class="alert"' if row.get("alerts") else ""
        items.append(f"<li{flag}>{html.escape(row['sentence'])}</li>")
    generated = datetime.now().astimezone().isoformat(timespec="seconds")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
li {{ margin: .3em 0; }} li.alert {{ color: #a00; font-weight: bold; }}
@media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(subtitle)}</p>
<p>{len(items)} access(es). Generated by Guetteur on {html.escape(generated)}. Patients are named
by pseudonym only.</p>
<ol>
{chr(10).join(items)}
</ol>
</body></html>
"""
