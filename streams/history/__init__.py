"""The access history: what every accepted event becomes in Elasticsearch, and its audit trail.

- ``document``: an event as a stored document (ECS names, patient id pseudonymised);
- ``templates``: the versioned index templates (strict mappings, monthly indices, read alias);
- ``writer``: the sink (deduplicate, chain, bulk write, retry);
- ``chain`` / ``checkpoints``: tamper evidence (hash chains, signed heads);
- ``audit`` / ``verify``: checking the chains; ``retention``: purging old months.
"""
