"""``confsync local``: the whole stack on 127.0.0.1, started, watched and stopped as one.

Children, each a process of its own on a free port, with its log in ``STATE/logs/NAME.log``:

- the Calendar sandbox and the conferencing sandbox (``confsync sandbox ...``, SQLite files),
  with authentication required, set up as Google and the vendor would be for a real install
  (``_provision``): the stack's users (``USERS``: three of ``example.com`` and one outside it)
  at both, each with a static Calendar token of their own (their "Calendar UI", for whoever
  drives the stack as them); confsync's OAuth client at each (redirect URIs: ingest's
  ``/connect/google`` and ``/connect/vendor``); an OAuth client "Calendar UI" that signs in any
  other user (stack/driver.py); and a service account with domain-wide delegation for
  ``example.com`` (both of ``confsync.calendar.CALENDAR_SCOPES``), its key file in the state
  dir (mode 0600). The services get every setting users' accounts need, so a user connects
  through ingest's connect pages, the add-on API takes Google ID tokens (minted by the Calendar
  sandbox for ``ADDON_AUDIENCE``), calendars are read as their owners and conferences live in
  their owners' vendor accounts. The dev token is still accepted (local mode);
- with ``transport="pubsub"``: the Pub/Sub emulator (this machine's jar), then
  ``confsync pubsub bootstrap``, then ``confsync serve ingest``, ``serve processor`` and
  ``serve publisher`` (as on Cloud Run, one process per service). Two emulator faults shape
  their settings: its ordered subscriptions can stall a key for good after a stream closes,
  so subscriptions are unordered; and its streams keep taking messages after their process
  is killed, so workers use unary Pull (``confsync/transport/pubsub/unary.py``);
- with ``transport="memory"`` (or no emulator jar, which a log line says): ``confsync serve
  all`` (the in-process queues cannot cross processes).

``start()`` returns once every child answers its readiness probe and the ready file is
written: one JSON object (see ``ReadyInfo``). ``supervise()`` restarts a child that dies
(as Cloud Run replaces a crashed instance), rewriting the ready file with its new pid.
``stop()`` stops the services first (SIGTERM: they drain), then the sandboxes and the
emulator; a child that ignores SIGTERM is killed after a grace period. The sandboxes keep
OAuth clients, grants and service accounts in memory only: a sandbox that had to be restarted
has forgotten them, which the log says (start the stack again).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import structlog

from confsync.calendar import CALENDAR_SCOPES
from confsync.errors import ConfigError
from confsync.serving import free_port
from confsync.settings import PREFIX, Settings, TransportKind
from confsync.tls import tls_context
from stack.emulators import Emulator, EmulatorError, find_jar, pubsub_emulator

__all__ = [
    "ADDON_AUDIENCE",
    "DELEGATED_DOMAIN",
    "USERS",
    "LocalStack",
    "OAuthClientInfo",
    "ReadyInfo",
    "ServiceInfo",
    "StackError",
]

log = structlog.get_logger(__name__)

_PROBE_TIMEOUT_S = 60.0
_GRACE_S = 10.0

DELEGATED_DOMAIN = "example.com"  # its admin granted confsync domain-wide delegation
# The stack's people: example.com's are read through delegation; dave's domain granted nothing,
# so he consents at Google too. Each has a vendor account, none has connected it yet.
USERS = ("alice@example.com", "bob@example.com", "carol@example.com", "dave@partner.example")
ADDON_AUDIENCE = "confsync-local-addon.apps.googleusercontent.com"  # the add-on's OAuth client id
LOCAL_DEFAULTS = {"DELETE_GRACE_S": "3", "LAG_REPAIR_INTERVAL_S": "1"}  # unless the environment says otherwise
_SERVICE_ACCOUNT = "confsync-calendar"


class StackError(RuntimeError):
    """A part of the local stack could not start; the message names it and where its log is."""


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """One child as the ready file shows it: a restart gives it a new pid."""

    url: str
    pid: int | None
    restarts: int
    log: str


@dataclass(frozen=True, slots=True)
class OAuthClientInfo:
    """An OAuth client registered at a sandbox."""

    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass
class ReadyInfo:
    """What ``start()`` returns and the ready file holds: where everything is and its keys."""

    calendar_api: str  # the Calendar API endpoint (Google's discovery document's root URL)
    provider_api: str
    provider_api_key: str
    ingest_url: str  # where Calendar posts watch notifications
    api_url: str  # the add-on API and the connect pages (CONFSYNC_PUBLIC_URL)
    api_token: str  # the dev token the add-on API accepts in local mode (the operator, no user)
    pubsub_emulator_host: str | None
    store: str
    transport: TransportKind
    state_dir: str
    google_base: str  # the Calendar sandbox: Google's OAuth, ID tokens and admin routes
    vendor_base: str  # the conferencing sandbox: its API, OAuth and admin routes
    addon_audience: str  # the audience of the add-on's ID tokens (POST {google_base}/_sandbox/id-token)
    user_tokens: dict[str, str]  # each of the stack's users -> their static Calendar token
    ui_client: OAuthClientInfo  # "Calendar UI": signs in users without a static token
    services: dict[str, ServiceInfo] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReadyInfo:
        services = {name: ServiceInfo(**service) for name, service in data.get("services", {}).items()}
        ui_client = OAuthClientInfo(**data["ui_client"])
        return cls(**{**data, "services": services, "ui_client": ui_client})


@dataclass(frozen=True, slots=True)
class _Identities:
    """What ``_provision`` set up at the sandboxes for the services."""

    google: OAuthClientInfo  # confsync's client at Google
    vendor: OAuthClientInfo  # confsync's client at the vendor
    ui: OAuthClientInfo
    service_account_file: Path


@dataclass
class _Child:
    """One supervised process: how to start it and how to know it is ready."""

    name: str
    argv: list[str]
    env: dict[str, str]
    url: str
    probe: str  # path answering 200 when ready
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI, argv built here
            self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait_ready(self, timeout_s: float = _PROBE_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.exited()
            if code is not None:
                raise StackError(f"{self.name} exited with code {code} at start; see {self.log_path}\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.probe, timeout=2, verify=tls_context()).status_code == 200:
                    return
            time.sleep(0.1)
        raise StackError(f"{self.name} not ready after {timeout_s:.0f}s; see {self.log_path}\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def terminate(self) -> None:
        """Ask the child to stop (SIGTERM: a service drains); ``stop`` waits for it."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self, grace_s: float = _GRACE_S) -> int | None:
        self.terminate()
        process, self.process = self.process, None
        code = None
        if process is not None:
            if process.poll() is None:
                try:
                    process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    log.warning("child ignored SIGTERM; killing it", child=self.name)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=grace_s)
            code = process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code


def _confsync(*args: str) -> list[str]:
    return [sys.executable, "-m", "stack.cli", *args]


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (keys and tokens)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an older file keeps its mode through O_CREAT
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


class LocalStack:
    """The whole stack as children of this process. Use ``with LocalStack(...) as info:``."""

    def __init__(  # noqa: PLR0913 - the command's options, named
        self,
        settings: Settings,
        *,
        transport: TransportKind | None = None,
        store_url: str | None = None,
        state_dir: Path | None = None,
        ready_file: Path | None = None,
        environ: Mapping[str, str] | None = None,
        on_step: Callable[[str], None] | None = None,
        users: Sequence[str] = USERS,
    ) -> None:
        self._settings = settings
        self._users = tuple(email.lower() for email in users)
        self._wanted = transport
        self._own_dir = state_dir is None
        self.state_dir = Path(tempfile.mkdtemp(prefix="confsync-local-")) if state_dir is None else state_dir
        self._store_url = store_url or f"sqlite:///{self.state_dir / 'confsync.sqlite'}"
        self._ready_file = ready_file
        self._base_env = dict(os.environ if environ is None else environ)
        self._step = on_step or log.info
        self._emulator: Emulator | None = None
        self._sandboxes: list[_Child] = []
        self._services: list[_Child] = []
        self._lock = threading.Lock()
        self.info: ReadyInfo | None = None

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> ReadyInfo:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> ReadyInfo:
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        transport = self._transport()
        secrets_ = {"api_key": secrets.token_urlsafe(24), "dev_token": secrets.token_urlsafe(24)}
        user_tokens = {email: f"ui-{secrets.token_urlsafe(18)}" for email in self._users}
        calendar_db = str(self.state_dir / "calendar.sqlite")
        static_tokens = [arg for email, token in user_tokens.items() for arg in ("--auth-token", f"{token}={email}")]
        calendar = self._sandbox(
            "calendar-sandbox",
            ["sandbox", "calendar", "--db", calendar_db, "--require-auth", *static_tokens],
            "/_sandbox/faults",
        )
        provider = self._sandbox(
            "provider-sandbox",
            ["sandbox", "provider", "--db", str(self.state_dir / "provider.sqlite"), "--api-key", secrets_["api_key"]],
            "/openapi.json",
        )
        if transport == "pubsub":
            self._start_emulator()
        for child in self._sandboxes:
            child.wait_ready()
            self._step(f"{child.name} ready at {child.url}")
        ingest_port = free_port()
        ingest_url = f"http://127.0.0.1:{ingest_port}"
        identities = self._provision(calendar.url, provider.url, ingest_url)
        env = self._service_env(
            transport, secrets_, calendar=calendar.url, provider=provider.url, ingest=ingest_url, identities=identities
        )
        if transport == "pubsub":
            self._bootstrap(env)
            roles = [("ingest", ingest_port), ("processor", free_port()), ("publisher", free_port())]
        else:
            roles = [("all", ingest_port)]
        for role, port in roles:
            argv = ["serve", role, "--port", str(port)]
            self._services.append(self._child(f"serve-{role}", argv, env, port, "/readyz"))
        for child in self._services:
            child.start()
        for child in self._services:
            child.wait_ready()
            self._step(f"{child.name} ready at {child.url}")
        self.info = ReadyInfo(
            calendar_api=f"{calendar.url}/calendar/v3/",
            provider_api=provider.url,
            provider_api_key=secrets_["api_key"],
            ingest_url=f"{ingest_url}/notifications",
            api_url=ingest_url,
            api_token=secrets_["dev_token"],
            pubsub_emulator_host=None if self._emulator is None else self._emulator.host,
            store=self._store_url,
            transport=transport,
            state_dir=str(self.state_dir),
            google_base=calendar.url,
            vendor_base=provider.url,
            addon_audience=ADDON_AUDIENCE,
            user_tokens=user_tokens,
            ui_client=identities.ui,
        )
        self._write_ready(self.info)
        return self.info

    def _provision(self, google: str, vendor: str, ingest: str) -> _Identities:
        """Set the sandboxes up as Google and the vendor would be for an install of confsync."""
        with httpx.Client(timeout=30, verify=tls_context()) as http:

            def admin(base: str, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
                answer = http.post(base + path, json=dict(body))
                if answer.status_code >= 300:
                    raise StackError(f"setting up {base}{path} failed: {answer.status_code} {answer.text[:300]}")
                result: dict[str, Any] = answer.json()
                return result

            def client(base: str, redirect_uri: str, name: str, *also: str) -> OAuthClientInfo:
                uris = [redirect_uri, *also]
                made = admin(base, "/_sandbox/oauth-clients", {"redirect_uris": uris, "name": name})
                return OAuthClientInfo(str(made["client_id"]), str(made["client_secret"]), redirect_uri)

            for email in self._users:
                admin(google, "/_sandbox/users", {"email": email, "name": email.partition("@")[0].title()})
                admin(vendor, "/_sandbox/users", {"email": email})
            identities = _Identities(
                google=client(google, f"{ingest}/connect/google", "confsync", f"{ingest}/settings/google"),
                vendor=client(vendor, f"{ingest}/connect/vendor", "confsync"),
                # Never fetched: whoever signs in reads the code off the redirect.
                ui=client(google, f"{google}/calendar-ui/signed-in", "Google Calendar"),
                service_account_file=self.state_dir / "service-account.json",
            )
            key = admin(google, "/_sandbox/service-accounts", {"name": _SERVICE_ACCOUNT})
            scopes = list(CALENDAR_SCOPES)
            delegation = {"client_id": key["client_id"], "domain": DELEGATED_DOMAIN, "scopes": scopes}
            admin(google, "/_sandbox/domain-wide-delegation", delegation)
        _write_private(identities.service_account_file, json.dumps(key, indent=2) + "\n")
        self._step(
            f"{len(self._users)} users at Google and the vendor; OAuth clients for confsync; "
            f"{key['client_email']} delegated for {DELEGATED_DOMAIN}"
        )
        return identities

    def _transport(self) -> TransportKind:
        if self._wanted == "memory":
            self._step("transport: in-process queues (--transport memory)")
            return "memory"
        if find_jar(self._settings.pubsub_emulator_jar) is None:
            if self._wanted == "pubsub":
                raise ConfigError(
                    f"no Pub/Sub emulator jar matches {self._settings.pubsub_emulator_jar} (or java is missing)",
                    variable="CONFSYNC_PUBSUB_EMULATOR_JAR",
                )
            log.warning(
                "Pub/Sub emulator not found: using the in-process transport",
                jar_pattern=self._settings.pubsub_emulator_jar,
            )
            self._step("transport: in-process queues (no Pub/Sub emulator jar on this machine)")
            return "memory"
        self._step("transport: Pub/Sub emulator")
        return "pubsub"

    def _start_emulator(self) -> None:
        jar = find_jar(self._settings.pubsub_emulator_jar)
        assert jar is not None  # noqa: S101 - _transport() checked it
        try:
            self._emulator = pubsub_emulator(jar).start()
        except EmulatorError as err:
            raise StackError(f"Pub/Sub emulator: {err}") from err
        self._step(f"Pub/Sub emulator ready at {self._emulator.host}")

    def _sandbox(self, name: str, args: list[str], probe: str) -> _Child:
        port = free_port()
        env = {k: v for k, v in self._base_env.items() if not k.startswith(PREFIX)}
        env[f"{PREFIX}LOG_FORMAT"] = "json"
        child = self._child(name, [*args, "--port", str(port)], env, port, probe)
        child.start()
        self._sandboxes.append(child)
        return child

    def _child(self, name: str, args: list[str], env: dict[str, str], port: int, probe: str) -> _Child:
        log_path = self.state_dir / "logs" / f"{name}.log"
        return _Child(name, _confsync(*args), env, f"http://127.0.0.1:{port}", probe, log_path)

    def _service_env(  # noqa: PLR0913 - what the services are told, named
        self,
        transport: TransportKind,
        secrets_: dict[str, str],
        *,
        calendar: str,
        provider: str,
        ingest: str,
        identities: _Identities,
    ) -> dict[str, str]:
        env = {k: v for k, v in self._base_env.items() if k != "PUBSUB_EMULATOR_HOST"}
        settings = {
            "LOCAL_MODE": "true",
            "LOG_FORMAT": "json",
            "TRACING": "off",  # no collector here: the logs carry each change's trace all the same
            "TRANSPORT": transport,
            "STORE_URL": self._store_url,
            "PROJECT_ID": self._settings.project_id,
            "CALENDAR_API_ENDPOINT": f"{calendar}/calendar/v3/",
            "PROVIDER_URL": provider,
            "PROVIDER_API_KEY": secrets_["api_key"],
            "DEV_TOKEN": secrets_["dev_token"],
            "WEBHOOK_URL": f"{ingest}/notifications",
            # users' accounts: the connect pages, ID tokens, calendars read as their owners
            "PUBLIC_URL": ingest,
            "ADDON_AUDIENCE": ADDON_AUDIENCE,
            "OAUTH_CLIENT_ID": identities.google.client_id,
            "OAUTH_CLIENT_SECRET": identities.google.client_secret,
            "VENDOR_CLIENT_ID": identities.vendor.client_id,
            "VENDOR_CLIENT_SECRET": identities.vendor.client_secret,
            "GOOGLE_AUTH_URL": f"{calendar}/o/oauth2/v2/auth",
            "GOOGLE_TOKEN_URL": f"{calendar}/token",
            "GOOGLE_REVOKE_URL": f"{calendar}/revoke",
            "GOOGLE_CERTS_URL": f"{calendar}/oauth2/v1/certs",
            "CALENDAR_SERVICE_ACCOUNT_FILE": str(identities.service_account_file),
            "DELEGATED_DOMAINS": DELEGATED_DOMAIN,
            "VAULT_KEY_FILE": str(self.state_dir / "vault.key"),
        }
        env.update({PREFIX + name: value for name, value in settings.items()})
        # A deleted meeting's conference goes after a short grace here (an undo or a move back
        # can still save it), released by a lag loop that looks every second.
        for name, value in LOCAL_DEFAULTS.items():
            env.setdefault(PREFIX + name, value)
        if self._emulator is not None:
            env["PUBSUB_EMULATOR_HOST"] = self._emulator.host
            # The emulator's ordered subscriptions can leave a key undelivered for good after a
            # streaming pull closes (a crash, or even a drain on SIGTERM), which a restarted
            # worker would never see. Ordering only saves work: versions and idempotency keep
            # the result right without it, so the local stack runs unordered on the emulator.
            env[f"{PREFIX}PUBSUB_ORDERED_SUBSCRIPTIONS"] = "false"
            # After a worker is killed the emulator keeps routing about half the new messages
            # to its dead streams for minutes: on the emulator, workers pull without streams.
            env[f"{PREFIX}PUBSUB_PULL"] = "unary"
        return env

    def _bootstrap(self, env: dict[str, str]) -> None:
        done = subprocess.run(  # noqa: S603 - our own CLI
            _confsync("pubsub", "bootstrap"), env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise StackError(f"pubsub bootstrap failed (code {done.returncode}):\n{done.stdout}{done.stderr}")
        self._step("Pub/Sub topics and subscriptions created")

    def _write_ready(self, info: ReadyInfo) -> None:
        with self._lock:
            info.services = {
                child.name: ServiceInfo(child.url, child.pid, child.restarts, str(child.log_path))
                for child in (*self._sandboxes, *self._services)
            }
            if self._ready_file is None:
                return
            temporary = self._ready_file.with_name(self._ready_file.name + ".tmp")
            _write_private(temporary, json.dumps(info.to_json(), indent=2) + "\n")  # it holds tokens
            temporary.replace(self._ready_file)  # readers never see half a file

    # -- supervise and stop --------------------------------------------------------------------

    def supervise(self, stop: threading.Event, *, poll_s: float = 0.2) -> None:
        """Until ``stop`` is set: restart any child that died, and say so."""
        while not stop.wait(poll_s):
            for child in (*self._sandboxes, *self._services):
                code = child.exited()
                if code is None:
                    continue
                child.restarts += 1
                log.warning("child died; restarting it", child=child.name, code=code, restarts=child.restarts)
                child.stop()
                child.start()
                try:
                    child.wait_ready()
                except StackError as err:
                    log.error("child did not come back", child=child.name, error=str(err))  # noqa: TRY400
                    continue
                if self.info is not None:
                    self._write_ready(self.info)
                log.info("child back", child=child.name, pid=child.pid)
                if any(child is sandbox for sandbox in self._sandboxes):
                    log.warning(
                        "the sandbox forgot its OAuth clients, grants and service accounts: start the stack again",
                        child=child.name,
                    )

    def stop(self) -> None:
        for child in self._services:  # all drain at once
            child.terminate()
        for child in reversed(self._services):
            code = child.stop(grace_s=self._settings.shutdown_deadline_s + 5)
            log.info("stopped", child=child.name, code=code)
        for child in self._sandboxes:
            child.terminate()
        for child in reversed(self._sandboxes):
            child.stop()
        if self._emulator is not None:
            self._emulator.stop()
            self._emulator = None
        self._services.clear()
        self._sandboxes.clear()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> ReadyInfo:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
