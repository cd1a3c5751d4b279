// The Guetteur console: plain DOM over the console API. The token stays in this tab only.
"use strict";

const $ = (id) => document.getElementById(id);
const say = (text) => { $("message").textContent = text; };

function token() { return sessionStorage.getItem("guetteur-token") || ""; }

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { ...(options.headers || {}), Authorization: "Bearer " + token(),
               "Content-Type": "application/json" },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) { throw new Error(body.error || response.statusText); }
  return body;
}

// A day picked in the browser is a day where the user is, not a UTC day: its first (or last)
// instant in local time, as an ISO instant the API compares with event times.
function localDay(value, endOfDay) {
  const moment = new Date(value + (endOfDay ? "T23:59:59.999" : "T00:00:00"));
  return moment.toISOString();
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  row.appendChild(td);
  return td;
}

async function login() {
  sessionStorage.setItem("guetteur-token", $("token").value.trim());
  try {
    const me = await api("/api/whoami");
    $("whoami").textContent = `signed in as ${me.name} (${me.role})`;
    const auditor = me.role === "auditor" || me.role === "admin";
    const analyst = me.role === "analyst" || me.role === "admin";
    $("report-section").classList.toggle("hidden", !auditor);
    $("search-section").classList.toggle("hidden", !auditor);
    $("alerts-section").classList.toggle("hidden", !analyst);
    $("overview-section").classList.toggle("hidden", !analyst);
    say("");
  } catch (error) { say("Sign-in failed: " + error.message); }
}

async function runReport() {
  const kind = $("report-kind").value;  // patient, actor or practice: the id filters on it
  const params = new URLSearchParams({ [kind]: $("patient").value.trim() });
  if ($("report-from").value) params.set("from", localDay($("report-from").value, false));
  if ($("report-to").value) params.set("to", localDay($("report-to").value, true));
  try {
    const report = await api(`/api/reports/${kind}?` + params);
    const list = $("report-results");
    list.replaceChildren();
    for (const row of report.rows) {
      const item = document.createElement("li");
      item.textContent = row.sentence;
      if (row.alerts) item.className = "alert";
      list.appendChild(item);
    }
    $("report-summary").textContent = `${report.count} access(es); this report is recorded too.`;
  } catch (error) {
    $("report-results").replaceChildren();
    $("report-summary").textContent = "";  // never a stale count beside an error
    say("Report failed: " + error.message);
  }
}

async function runSearch() {
  const params = new URLSearchParams();
  for (const name of ["actor", "practice", "session", "action"]) {
    const value = $("search-" + name).value.trim();
    if (value) params.set(name, value);
  }
  if ($("search-from").value) params.set("from", localDay($("search-from").value, false));
  if ($("search-to").value) params.set("to", localDay($("search-to").value, true));
  try {
    const result = await api("/api/search?" + params);
    const body = $("search-results");
    body.replaceChildren();
    for (const row of result.rows) {
      const tr = document.createElement("tr");
      cell(tr, new Date(row.time).toLocaleString());
      for (const key of ["actor", "role", "action", "category", "practice", "session", "alerts"]) cell(tr, row[key]);
      if (row.alerts) tr.className = "alert";
      body.appendChild(tr);
    }
    const more = result.next ? " shown; more match (narrow the search, or page the API with after=next)" : "";
    $("search-summary").textContent = `${result.count} access(es)${more}`;
  } catch (error) {
    $("search-results").replaceChildren();
    $("search-summary").textContent = "";  // never a stale count beside an error
    say("Search failed: " + error.message);
  }
}

async function triage(alertId, status, comment) {
  try {
    await api(`/api/alerts/${encodeURIComponent(alertId)}/triage`,
              { method: "POST", body: JSON.stringify({ status, comment }) });
    await loadAlerts();
    say(`Alert ${alertId}: ${status.replace("_", " ")}`);
  } catch (error) { say("Triage failed: " + error.message); }
}

async function loadAlerts() {
  const params = new URLSearchParams({ status: $("alerts-status").value });
  for (const name of ["rule", "actor", "practice"]) {
    const value = $("alerts-" + name).value.trim();
    if (value) params.set(name, value);
  }
  try {
    const result = await api("/api/alerts?" + params);
    const body = $("alerts");
    body.replaceChildren();
    for (const alert of result.alerts) {
      const tr = document.createElement("tr");
      tr.dataset.alertId = alert.alert_id;
      tr.className = "sev-" + alert.severity;
      cell(tr, new Date(alert.timestamp).toLocaleString());
      cell(tr, alert.severity); cell(tr, alert.rule_id); cell(tr, alert.actor_id);
      cell(tr, alert.practice_id); cell(tr, alert.summary);
      const evidence = cell(tr, "");
      const open = document.createElement("button");
      open.textContent = `${alert.event_count} event(s)`; open.className = "open-incident";
      open.addEventListener("click", () => showIncident(alert));
      evidence.appendChild(open);
      const last = alert.triage_history[alert.triage_history.length - 1];
      cell(tr, alert.triage.status + (last ? ` (${last.by}${last.comment ? ": " + last.comment : ""})` : ""));
      const actions = cell(tr, "");
      const comment = document.createElement("input");
      comment.className = "triage-comment"; comment.placeholder = "comment";
      actions.appendChild(comment);
      for (const [label, status, css] of [["Acknowledge", "acknowledged", "triage-ack"],
                                           ["True positive", "true_positive", "triage-tp"],
                                           ["False positive", "false_positive", "triage-fp"],
                                           ["Close", "closed", "triage-close"]]) {
        const button = document.createElement("button");
        button.textContent = label; button.className = css;
        button.addEventListener("click", () => triage(alert.alert_id, status, comment.value));
        actions.appendChild(button);
      }
      body.appendChild(tr);
    }
    say(`${result.count} alert(s)` + (result.next ? ", more: narrow the filters" : ""));
  } catch (error) {
    $("alerts").replaceChildren();
    say("Loading alerts failed: " + error.message);
  }
}

// One incident: its evidence (the accesses themselves, read from the history: a recorded
// look), its triage history, and the way to call it a false positive with an exception.
let shown = null;

async function showIncident(alert) {
  shown = alert;
  $("incident").classList.remove("hidden");
  $("incident-id").textContent = alert.alert_id;
  $("incident-summary").textContent = alert.summary;
  const history = $("incident-history");
  history.replaceChildren();
  for (const step of alert.triage_history) {
    const item = document.createElement("li");
    item.textContent = `${new Date(step.at).toLocaleString()}: ${step.status.replace("_", " ")} by ${step.by}` +
      (step.comment ? ` (${step.comment})` : "");
    history.appendChild(item);
  }
  const evidence = $("incident-evidence");
  evidence.replaceChildren();
  try {
    const params = new URLSearchParams();
    for (const id of alert.event_ids) params.append("event", id);
    const found = await api("/api/search?" + params);
    for (const row of found.rows) {
      const item = document.createElement("li");
      item.className = "evidence";
      item.textContent = `${new Date(row.time).toLocaleString()}: ${row.actor} (${row.role}) ` +
        `${row.action} ${row.category || ""} at ${row.practice || "-"}` +
        (row.session ? `, session ${row.session}` : "");
      evidence.appendChild(item);
    }
  } catch (error) { say("Evidence failed: " + error.message); }
}

async function falsePositiveWithException() {
  if (!shown) return;
  const expires = $("exception-expires").value;
  const body = {
    status: "false_positive",
    comment: $("exception-reason").value.trim(),
    // From the incident's first evidence on: this very pattern is what the analyst accepts.
    exception: { scope: ["actor_id", "practice_id"], starts: shown.timestamp,
                 expires: expires ? localDay(expires, true) : "" },
  };
  try {
    const record = await api(`/api/alerts/${encodeURIComponent(shown.alert_id)}/triage`,
                             { method: "POST", body: JSON.stringify(body) });
    await loadAlerts();  // it leaves the open list; then say what happened
    say(`Alert ${shown.alert_id}: false positive; exception ${record.exception.exception_id}` +
        ` until ${new Date(record.exception.expires).toLocaleDateString()}; page ${record.page}`);
  } catch (error) { say("False positive failed: " + error.message); }
}

const charts = {};

// One chart per canvas, replaced on each load (Chart.js, served by the console itself).
function draw(id, type, labels, datasets, options = {}) {
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart($(id), {
    type, data: { labels, datasets },
    options: { animation: false, responsive: true, ...options },
  });
}

async function loadOverview() {
  const params = new URLSearchParams();
  if ($("overview-from").value) params.set("from", localDay($("overview-from").value, false));
  if ($("overview-to").value) params.set("to", localDay($("overview-to").value, true));
  try {
    const data = await api("/api/overview?" + params);
    const days = [...new Set(data.alerts_per_day.map((r) => r.day))].sort();
    const rules = [...new Set(data.alerts_per_day.map((r) => r.rule_id))].sort();
    draw("chart-alerts", "bar", days, rules.map((rule) => ({
      label: rule,
      data: days.map((day) => (data.alerts_per_day.find((r) => r.day === day && r.rule_id === rule) || {}).alerts || 0),
    })), { scales: { x: { stacked: true }, y: { stacked: true } } });
    const pairs = (rows) => [rows.map((r) => r.key), [{ label: "alerts", data: rows.map((r) => r.count) }]];
    draw("chart-triage", "doughnut", ...pairs(data.alerts_by_triage), { aspectRatio: 2 });
    draw("chart-actors", "bar", ...pairs(data.top_actors), { indexAxis: "y" });
    draw("chart-practices", "bar", ...pairs(data.top_practices), { indexAxis: "y" });
    draw("chart-exports", "line", data.records_exported_per_day.map((r) => r.day),
         [{ label: "records", data: data.records_exported_per_day.map((r) => r.records) }]);
    const activity = [...new Set([...data.hri_downloads_per_day, ...data.auditor_searches_per_day].map((r) => r.day))].sort();
    const count = (rows, day) => (rows.find((r) => r.day === day) || {}).count || 0;
    draw("chart-activity", "line", activity, [
      { label: "HRi downloads", data: activity.map((day) => count(data.hri_downloads_per_day, day)) },
      { label: "auditors' searches", data: activity.map((day) => count(data.auditor_searches_per_day, day)) },
    ]);
    const total = data.alerts_by_severity.reduce((sum, r) => sum + r.count, 0);
    $("overview-summary").textContent =
      `${total} alert(s) from ${new Date(data.from).toLocaleString()} to ${new Date(data.to).toLocaleString()}`;
  } catch (error) {
    $("overview-summary").textContent = "";
    say("Overview failed: " + error.message);
  }
}

$("login").addEventListener("click", login);
$("run-report").addEventListener("click", runReport);
$("run-search").addEventListener("click", runSearch);
$("load-alerts").addEventListener("click", loadAlerts);
$("load-overview").addEventListener("click", loadOverview);
$("false-positive-with-exception").addEventListener("click", falsePositiveWithException);
