"""``confsync serve ROLE``: one command per role of ``stack.services.Role``."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from confsync.errors import ConfigError
from stack.cli._common import exit_on, settings_of
from stack.roles import Role

__all__ = ["app"]

app = typer.Typer(help="Run a confsync service until SIGTERM (then drain in-flight work).", no_args_is_help=True)

_ROLE_HELP = {
    Role.INGEST: "Calendar's watch notifications, the add-on API, the channel routes and their channel work (8080).",
    Role.PROCESSOR: "CalendarChanged -> sync -> classify -> ConferenceCommand (8082).",
    Role.PUBLISHER: "ConferenceCommand -> the conferencing API: retries, idempotency, dead letters (8083).",
    Role.ALL: "ingest, processor and publisher in one process (the only role the memory transport allows).",
}
_DEFAULT_PORTS = {Role.INGEST: 8080, Role.PROCESSOR: 8082, Role.PUBLISHER: 8083, Role.ALL: 8080}
_DRAIN = (
    "Serves /healthz and /readyz. On SIGTERM it stops taking work and drains in-flight messages within "
    "CONFSYNC_SHUTDOWN_DEADLINE_S (exit code 3 if they did not finish)."
)

PushOption = Annotated[
    bool, typer.Option("--push", help="Serve push routes instead of pulling (default: CONFSYNC_DELIVERY).")
]
HostOption = Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a container).")]
PortOption = Annotated[int | None, typer.Option(help="Port to listen on (0 picks a free one).", min=0, max=65535)]
ProcessesOption = Annotated[
    int,
    typer.Option(
        help="Serve with this many processes sharing the port (one per CPU, say): "
        "one Python process uses one core at a time. Not with CONFSYNC_TRANSPORT=memory.",
        min=1,
        max=64,
    ),
]


def _serve(  # noqa: PLR0913 - the serve options, named
    ctx: typer.Context, role: Role, *, push: bool, host: str, port: int | None, processes: int
) -> None:
    from stack.processes import serve_processes  # noqa: PLC0415 - the services load only when asked for

    settings = settings_of(ctx)
    if push:
        settings = replace(settings, delivery="push")
    chosen = _DEFAULT_PORTS[role] if port is None else port
    with exit_on(ConfigError, code=2, message="configuration error: {}"):
        status = serve_processes(settings, role, host=host, port=chosen, processes=processes)
    if status:
        raise typer.Exit(code=status)


def _add_serve_command(role: Role) -> None:
    """``confsync serve ROLE``; every role may serve push routes instead of pulling."""

    def pulled_or_pushed(
        ctx: typer.Context,
        push: PushOption = False,
        host: HostOption = "127.0.0.1",
        port: PortOption = None,
        processes: ProcessesOption = 1,
    ) -> None:
        _serve(ctx, role, push=push, host=host, port=port, processes=processes)

    app.command(role.value, help=f"{_ROLE_HELP[role]} {_DRAIN}")(pulled_or_pushed)


for _role in Role:
    _add_serve_command(_role)
