"""``guetteur stack``: the local Kafka + Elasticsearch the demo and the tests run on."""

from __future__ import annotations

import time

import click

from streams import __version__
from streams.cli.output import emit, progress, stderr
from streams.settings import StackSettings, load
from streams.stack import LocalStack
from streams.stack.process import tail
from streams.stack.prometheus import registered_workers

STATUS_COLUMNS = ["name", "running", "version", "address", "pid", "detail"]


def _stack() -> LocalStack:
    return LocalStack(load(StackSettings))


@click.group()
def stack() -> None:
    """Run the bundled local stack (Kafka KRaft + Elasticsearch 8) on this machine."""


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON lines.")
def up(as_json: bool) -> None:
    """Fetch (first time only), start, and wait until Kafka and Elasticsearch answer."""
    local = _stack()
    started_at = time.monotonic()
    with progress("stack up") as report:
        started = local.up(report)
    took = time.monotonic() - started_at
    stderr.print(
        f"stack ready in {took:.1f}s"
        + (f" (started: {', '.join(started)})" if started else " (already running)")
    )
    emit([s.as_dict() for s in local.status()], STATUS_COLUMNS, as_json=as_json)


@stack.command()
@click.option("--json", "as_json", is_flag=True)
def down(as_json: bool) -> None:
    """Stop the processes `stack up` started (by their recorded pids); data is kept."""
    local = _stack()
    with progress("stack down") as report:
        stopped = local.down(progress=report)
    rows = [{"name": s.name, "stopped": s.name in stopped} for s in local.services]
    emit(rows, ["name", "stopped"], as_json=as_json)


@stack.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """What runs where: versions, addresses, pids, log files; and the workers on this stack."""
    local = _stack()
    rows = [s.as_dict() for s in local.status()]
    for worker in registered_workers(local.prometheus.targets_dir):
        detail = f"app {worker.app_id}"
        if not worker.running:
            detail = f"died without stopping; once dealt with: rm {worker.file}"
        rows.append(
            {
                "name": "worker",
                "running": worker.running,
                "version": __version__,
                "address": worker.address,
                "pid": worker.pid,
                "detail": detail,
            }
        )
    emit(rows, STATUS_COLUMNS, as_json=as_json)


@stack.command()
@click.argument("service", required=False)
@click.option("-n", "--lines", default=40, show_default=True, help="How many lines per service.")
def logs(service: str | None, lines: int) -> None:
    """Print the last lines of a service's log (all services when none is named)."""
    local = _stack()
    services = [local.service(service)] if service else local.services
    for item in services:
        click.echo(f"==> {item.name}: {item.log_file}")
        click.echo(tail(item.log_file, lines) or "(no log yet)")
