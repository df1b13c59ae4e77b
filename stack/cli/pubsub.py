"""``confsync pubsub bootstrap``: confsync's topics and subscriptions, created where missing."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from confsync.transport.topology import terraform_vars, topology
from stack.cli._common import exit_on, settings_of

__all__ = ["app"]

app = typer.Typer(help="Google Cloud Pub/Sub (or its emulator): topics and subscriptions.", no_args_is_help=True)


@app.command("bootstrap")
def pubsub_bootstrap(
    ctx: typer.Context,
    push_endpoint: Annotated[
        str | None,
        typer.Option(help="Base URL of the services: worker subscriptions then push to URL/pubsub/TOPIC."),
    ] = None,
    print_terraform_vars: Annotated[
        bool,
        typer.Option(
            "--print-terraform-vars",
            help="Create nothing: print the names and policies as infra/terraform's `pubsub` variable "
            "(JSON for a .tfvars.json file).",
        ),
    ] = False,
) -> None:
    """Create confsync's topics and subscriptions where missing; report what was created or found.

    Safe to run again: existing topics and subscriptions are left exactly as they are.
    Uses CONFSYNC_PROJECT_ID, and PUBSUB_EMULATOR_HOST when set.
    """
    settings = settings_of(ctx)
    if print_terraform_vars:
        typer.echo(json.dumps(terraform_vars(settings), indent=2))
        return

    from google.api_core import exceptions as google_exceptions  # noqa: PLC0415 - heavy; only here

    from confsync.transport.pubsub import bootstrap  # noqa: PLC0415

    target = f"emulator at {settings.pubsub_emulator_host}" if settings.pubsub_emulator_host else "Google Cloud"
    typer.echo(f"Pub/Sub project {settings.project_id} ({target})")
    with exit_on(google_exceptions.GoogleAPIError, code=1, message="Pub/Sub refused or did not answer: {}"):
        report = bootstrap(settings, topology(settings), push_endpoint=push_endpoint)
    for line in report.created:
        typer.echo(f"  created {line}")
    for line in report.found:
        typer.echo(f"  found   {line}")
    typer.echo(f"{len(report.created)} created, {len(report.found)} already there")
