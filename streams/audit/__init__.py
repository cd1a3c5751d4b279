"""What auditors and the DPO ask of the history: searches and plain-language reports.

- ``query``: filters → an Elasticsearch query on the history (patients only by pseudonym);
- ``search``: every matching document, paged with a point in time and ``search_after``;
- ``report``: the rows of a patient, actor or practice report, in plain language, with alerts;
- ``watch``: each search is itself recorded as an access event, through the same pipeline.
"""
