"""The ``guetteur`` command: one entry point for operators, auditors and CI."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click
from elastic_transport import ConnectionError as ElasticsearchUnreachable

from detectors.policy import PolicyError
from streams import __version__
from streams.audit.watch import AuditNotRecordedError
from streams.cli.audit import report, search
from streams.cli.console import console, token
from streams.cli.demo import demo
from streams.cli.detection import detect, simulate
from streams.cli.dlq import dlq
from streams.cli.exceptions import exceptions
from streams.cli.history import retention, verify
from streams.cli.output import fail
from streams.cli.policy import policy
from streams.cli.pseudonym import pseudonym
from streams.cli.redactions import redactions
from streams.cli.stack import stack
from streams.cli.worker import worker
from streams.history.templates import HistorySetupError
from streams.settings import ConfigError
from streams.stack import StackError
from streams.topics import TopicError


@click.group()
@click.version_option(__version__, prog_name="guetteur")
def cli() -> None:
    """Guetteur watches who touches health data: Kafka -> detectors -> Elasticsearch."""


cli.add_command(stack)
cli.add_command(worker)
cli.add_command(demo)
cli.add_command(pseudonym)
cli.add_command(dlq)
cli.add_command(redactions)
cli.add_command(exceptions)
cli.add_command(verify)
cli.add_command(retention)
cli.add_command(policy)
cli.add_command(detect)
cli.add_command(simulate)
cli.add_command(search)
cli.add_command(report)
cli.add_command(console)
cli.add_command(token)


def main() -> None:
    """Errors go to people as a red line on stderr, and with ``--json`` to machines as one
    JSON object on stdout (``{"error": ..., "exit": N}``); the exit status is the same."""
    as_json = "--json" in sys.argv[1:]
    try:
        cli(standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as exc:
        _failed(exc.format_message(), exc.exit_code, as_json, exc.show)
    except click.Abort:
        _failed("aborted", 130, as_json)
    except (
        StackError,
        ConfigError,
        TopicError,
        HistorySetupError,
        PolicyError,
        AuditNotRecordedError,
    ) as exc:
        _failed(str(exc), 1, as_json)
    except ElasticsearchUnreachable as exc:
        message = (
            f"cannot reach Elasticsearch ({exc.message}); check GUETTEUR_ES_URL, or start the "
            "local stack with `guetteur stack up`"
        )
        _failed(message, 1, as_json)


def _failed(message: str, code: int, as_json: bool, show: Callable[[], None] | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"error": message, "exit": code}) + "\n")
        sys.stdout.flush()
    elif show is not None:
        show()
    else:
        fail(message)
    sys.exit(code)


if __name__ == "__main__":
    main()
