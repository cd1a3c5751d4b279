"""The I/O wiring of Guetteur: Faust app and agents, Elasticsearch sink, CLI, local stack."""

__version__ = "0.1.0"
