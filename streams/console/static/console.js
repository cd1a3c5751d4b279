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
    say("");
  } catch (error) { say("Sign-in failed: " + error.message); }
}

async function runReport() {
  const params = new URLSearchParams({ patient: $("patient").value.trim() });
  if ($("report-from").value) params.set("from", $("report-from").value + "T00:00:00+00:00");
  if ($("report-to").value) params.set("to", $("report-to").value + "T23:59:59+00:00");
  try {
    const report = await api("/api/reports/patient?" + params);
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
  try {
    const result = await api("/api/search?" + params);
    const body = $("search-results");
    body.replaceChildren();
    for (const row of result.rows) {
      const tr = document.createElement("tr");
      for (const key of ["time", "actor", "role", "action", "category", "practice", "session"]) cell(tr, row[key]);
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
  try {
    const result = await api("/api/alerts?status=" + $("alerts-status").value);
    const body = $("alerts");
    body.replaceChildren();
    for (const alert of result.alerts) {
      const tr = document.createElement("tr");
      tr.dataset.alertId = alert.alert_id;
      tr.className = "sev-" + alert.severity;
      cell(tr, alert.severity); cell(tr, alert.rule_id); cell(tr, alert.summary);
      cell(tr, alert.triage.status);
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
    say(`${result.count} alert(s)`);
  } catch (error) { say("Loading alerts failed: " + error.message); }
}

$("login").addEventListener("click", login);
$("run-report").addEventListener("click", runReport);
$("run-search").addEventListener("click", runSearch);
$("load-alerts").addEventListener("click", loadAlerts);
