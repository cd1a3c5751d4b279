"""Pure detection logic: models, policy and rule families. No I/O lives here.

Only the standard library and pydantic may be imported (a test walks this package with ``ast``):
Kafka, Faust, Elasticsearch and HTTP belong to ``streams``.
"""
