"""Detection in the worker: routing events to detectors, their states, alerts out.

- ``routing``: the internal topic's messages (detector, key, event);
- ``states``: detector states kept in a Faust table, written once per batch;
- ``sink``: the alerts index in Elasticsearch;
- ``agents``: the Faust agents that tie them to ``detectors.runner``.
"""
