"""The suite's fixtures (the real local stack, isolated names) for the failover scenario."""

from tests.conftest import isolated, stack

__all__ = ["isolated", "stack"]
