"""The auditors' and analysts' console: an HTTP API with per-user tokens, and a small web UI.

- ``tokens``: API users, their roles, tokens stored as hashes;
- ``triage``: the status of each alert (acknowledged, true or false positive, closed), with its
  history; a false positive or a closed incident resolves its page;
- ``api``: the aiohttp application (searches, reports, alerts, triage) and the static console.
"""
