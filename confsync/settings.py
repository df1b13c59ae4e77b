"""confsync's configuration: one frozen ``Settings``, read from the environment once.

``Settings.from_env()`` is the only place in confsync that reads ``os.environ``, and only
entry points call it; everything else receives a ``Settings`` (or the few values it needs).
Each setting is the environment variable ``CONFSYNC_<NAME>`` (the two emulator hosts keep
the names Google's client libraries read). Every value is validated here, so a typo fails at
start with a message naming the variable, never later inside a worker. A ``CONFSYNC_``
variable that names no setting is an error too, with the closest name suggested.

Secrets are ``Secret`` values: they print as ``********`` and only ``reveal()`` gives the
text, so a whole ``Settings`` can be logged or shown by ``confsync config`` safely.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from confsync.errors import ConfigError

__all__ = [
    "PREFIX",
    "Delivery",
    "PullKind",
    "PushAuth",
    "Secret",
    "SettingInfo",
    "Settings",
    "TracingKind",
    "TransportKind",
    "default_vault_key_file",
]

PREFIX = "CONFSYNC_"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
TransportKind = Literal["pubsub", "memory"]
Delivery = Literal["pull", "push"]
PullKind = Literal["streaming", "unary"]
PushAuth = Literal["verify", "platform"]
TracingKind = Literal["gcp", "otlp", "off"]


@dataclass(frozen=True, slots=True)
class Secret:
    """A value that must never be printed or logged; ``reveal()`` is the only way in."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"


def _setting(default: Any, help: str, *, env: str | None = None) -> Any:  # noqa: A002 - reads best at call sites
    """Declare one setting: its default, its one-line help and (rarely) a non-prefixed name."""
    return field(default=default, metadata={"help": help, "env": env})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob confsync has. Build it with ``from_env``; tests build it directly."""

    # -- where things live ------------------------------------------------------------------
    project_id: str = _setting("confsync-local", "Google Cloud project for Pub/Sub, Firestore and log traces.")
    store_url: str = _setting(
        "",
        "State store: sqlite:///PATH or firestore://PROJECT[/DATABASE]. "
        "Empty means a SQLite file under the user's data directory.",
    )
    vault_key_file: str | None = _setting(
        None,
        "File of the token vault's key-encryption key: 32 random bytes, mode 0600, created when missing "
        "(accounts/vault.py). Unset means vault.key next to a SQLite store; a store shared by several "
        "machines (Firestore) needs one key for all: a KMS or Secret Manager key, or this file, the same everywhere.",
    )
    vault_key: Secret | None = _setting(
        None,
        "The token vault's key-encryption key as base64 of 32 bytes, from Secret Manager in production; "
        "set, it is used instead of CONFSYNC_VAULT_KEY_FILE. The connect flow's state is signed with a key "
        "derived from it (HKDF), so rotating it also ends connect links in flight.",
    )
    pubsub_emulator_host: str | None = _setting(
        None, "host:port of a Pub/Sub emulator; unset means real Pub/Sub.", env="PUBSUB_EMULATOR_HOST"
    )
    firestore_emulator_host: str | None = _setting(
        None, "host:port of a Firestore emulator; unset means real Firestore.", env="FIRESTORE_EMULATOR_HOST"
    )
    pubsub_emulator_jar: str = _setting(
        "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar",
        "Path (glob) of the Pub/Sub emulator jar that tests and `confsync local` start.",
    )
    firestore_emulator_jar: str = _setting(
        "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar",
        "Path (glob) of the Firestore emulator jar that tests start.",
    )
    # -- logging ----------------------------------------------------------------------------
    log_format: LogFormat = _setting("auto", "json (Cloud Logging lines), console, or auto (console on a TTY).")
    log_level: LogLevel = _setting("info", "Lowest level logged: debug, info, warning or error.")
    tracing: TracingKind = _setting(
        "off",
        "Where the services send the spans of each change's trace: gcp (Cloud Trace, through its OTLP "
        "endpoint, as the service's Google account), otlp (an OpenTelemetry collector, "
        "CONFSYNC_OTLP_ENDPOINT) or off (none recorded; log lines still carry their trace).",
    )
    otlp_endpoint: str | None = _setting(
        None,
        "The collector's OTLP/HTTP traces URL for CONFSYNC_TRACING=otlp; unset means "
        "http://localhost:4318/v1/traces (a collector beside the service).",
    )
    # -- Pub/Sub names ----------------------------------------------------------------------
    topic_calendar_changes: str = _setting("calendar-changes", "Topic for CalendarChanged messages.")
    topic_conference_commands: str = _setting("conference-commands", "Topic for ConferenceCommand messages.")
    topic_calendar_changes_dead: str = _setting(
        "calendar-changes-dead", "Dead-letter topic for CalendarChanged messages."
    )
    topic_conference_commands_dead: str = _setting(
        "conference-commands-dead", "Dead-letter topic for ConferenceCommand messages."
    )
    topic_channel_work: str = _setting(
        "channel-work", "Topic for channel passes fanned out: one calendar's channel, or the next page of due ones."
    )
    topic_channel_work_dead: str = _setting("channel-work-dead", "Dead-letter topic for channel-work messages.")
    sub_calendar_changes: str = _setting("calendar-changes-processor", "Subscription the processors read.")
    sub_conference_commands: str = _setting("conference-commands-publisher", "Subscription the publishers read.")
    sub_channel_work: str = _setting("channel-work-ingest", "Subscription the ingest service reads channel work from.")
    pubsub_timeout_s: float = _setting(30.0, "Deadline in seconds for one Pub/Sub call, retries included.")
    pubsub_ack_deadline_s: int = _setting(60, "Ack deadline of confsync's subscriptions, in seconds.")
    pubsub_max_delivery_attempts: int = _setting(
        20,
        "Deliveries of one message before it is dead-lettered (Pub/Sub allows 5 to 100); with the "
        "backoff growing to 600 s, an overload has well over an hour to pass before anything is dead-lettered.",
    )
    pubsub_flow_max_messages: int = _setting(100, "Messages one worker holds unacknowledged at most.")
    pubsub_flow_max_bytes: int = _setting(10 * 1024 * 1024, "Bytes one worker holds unacknowledged at most.")
    pubsub_ordered_subscriptions: bool = _setting(
        default=True,
        help="Create the worker subscriptions with message ordering (`confsync local` turns it off on the "
        "emulator, whose ordered subscriptions can stall a key after a worker restarts).",
    )
    pubsub_lease_extension_s: int = _setting(
        20,
        "Longest one lease extension of a held message, in seconds: a crashed worker's messages "
        "(and, with ordering, their keys) come back within about this long.",
    )
    pubsub_streams: int = _setting(2, "Streaming-pull streams (or unary pullers) per worker process.")
    pubsub_pull: PullKind = _setting(
        "streaming",
        "How a pull worker pulls: streaming (Google's Pub/Sub) or unary (the emulator, whose streams "
        "keep taking messages after their process is killed; confsync/transport/pubsub/unary.py).",
    )
    pubsub_publish_max_messages: int = _setting(
        1000, "Messages in one Pub/Sub publish request at most (Pub/Sub allows 1,000)."
    )
    pubsub_publish_max_latency_s: float = _setting(
        0.002, "How long the first message to an idle topic waits for others to share its publish request."
    )
    transport: TransportKind = _setting(
        "pubsub", "pubsub (Google Cloud Pub/Sub or its emulator) or memory (in-process; `serve all` only)."
    )
    delivery: Delivery = _setting("pull", "How processors and publishers get messages: pull (streaming) or push.")
    memory_queue_limit: int = _setting(10_000, "Messages the in-process transport holds before publish waits.")
    shutdown_deadline_s: float = _setting(
        8.0,
        "On SIGTERM, how long the server and in-flight messages may take to finish, in all "
        "(Cloud Run kills an instance 10 s after SIGTERM).",
    )
    # -- Google Calendar --------------------------------------------------------------------
    calendar_api_endpoint: str | None = _setting(
        None, "Calendar API endpoint override (a sandbox's http://HOST:PORT/calendar/v3/); unset means Google."
    )
    calendar_service_account_file: str | None = _setting(
        None, "Service-account key (JSON) with domain-wide delegation; unset means anonymous (sandbox)."
    )
    calendar_user_tokens_file: str | None = _setting(
        None, "JSON file of users' refresh tokens by email, when there is no domain-wide delegation."
    )
    oauth_client_id: str | None = _setting(
        None, "confsync's Google OAuth client (a web application): the connect flow signs users in with it."
    )
    oauth_client_secret: Secret | None = _setting(None, "That OAuth client's secret.")
    google_auth_url: str = _setting(
        "https://accounts.google.com/o/oauth2/v2/auth",
        "Google's authorization endpoint (the consent page); the Calendar sandbox's /o/oauth2/v2/auth locally.",
    )
    google_token_url: str = _setting(
        "https://oauth2.googleapis.com/token",
        "Google's token endpoint (code exchange, refresh); the Calendar sandbox's /token locally.",
    )
    google_revoke_url: str = _setting(
        "https://oauth2.googleapis.com/revoke", "Google's revocation endpoint; the Calendar sandbox's /revoke locally."
    )
    delegated_domains: tuple[str, ...] = _setting(
        (),
        "Comma-separated Google Workspace domains whose admin granted domain-wide delegation to "
        "CONFSYNC_CALENDAR_SERVICE_ACCOUNT_FILE: their users skip Google's consent and their calendars "
        "are read as them through the service account.",
    )
    conference_solution_names: tuple[str, ...] = _setting(
        ("My Web Conference", "My Recorded Web Conference"),
        "Comma-separated conference solution names that mark an event's conference as ours.",
    )
    webhook_url: str | None = _setting(None, "Public HTTPS address Calendar posts watch notifications to.")
    sync_min_interval_s: float = _setting(
        0.5, "Shortest time between two listings of one calendar: a burst of notifications shares one."
    )
    notify_fold_s: float = _setting(
        0.25,
        "Ingest publishes a calendar's first notification at once and folds those that follow within this "
        "many seconds into one message (ingest/fold.py); never longer than CONFSYNC_SYNC_MIN_INTERVAL_S; 0 turns "
        "folding off.",
    )
    sync_max_interval_s: float = _setting(
        2.0, "Longest time between two listings of one calendar however fast it is notified (a storm)."
    )
    sync_storm_rate: float = _setting(
        8.0, "Notifications a second from which a calendar's listings wait longer (processors/pacing.py)."
    )
    sync_interval_per_rate_s: float = _setting(
        0.15,
        "Seconds more a calendar's listings wait for each notification a second above "
        "CONFSYNC_SYNC_STORM_RATE: with 0.15, one notified 15 times a second is listed every 1.55 s.",
    )
    lag_repair_after_s: float = _setting(
        60.0,
        "A calendar notified this many seconds ago that no sync has covered since is re-announced "
        "(its CalendarChanged was lost or is stuck; ingest/lag.py).",
    )
    poll_after_s: float = _setting(
        6 * 3600.0,
        "An active calendar no listing has covered for this many seconds is listed anyway (incrementally), "
        "so a watch channel Google stopped delivering on costs at most this long; 0: never.",
    )
    lag_repair_interval_s: float = _setting(
        30.0, "How often the ingest service looks for such calendars, in seconds; 0 turns the loop off."
    )
    outbox_max_republishes: int = _setting(
        10,
        "Times ingest/lag.py publishes an unsettled command again; after that it goes to the "
        "commands' dead-letter topic with the cause and leaves the outbox.",
    )
    orphan_after_s: float = _setting(
        24 * 3600.0,
        "A conference the add-on created for an event no full listing shows is deleted (as an orphan: the "
        "user discarded the event) once it is this many seconds old; sooner, the user may still be editing.",
    )
    delete_grace_s: float = _setting(
        300.0,
        "A conference whose event was deleted, or moved where its owner cannot read it, is deleted this many "
        "seconds later, unless the event is seen again first (Calendar's undo, a move back). 0: at once.",
    )
    retain_days: int = _setting(
        90,
        "Days confsync keeps an event's link and applied version after the event ends (a series: its last "
        "occurrence; an unbounded series is kept while it lives) or after its conference was deleted; then "
        "SQLite's sweep or Firestore's TTL policy removes them (confsync/retention.py).",
    )
    channel_ttl_s: int = _setting(7 * 24 * 3600, "Lifetime in seconds asked for each watch channel.")
    backfill_requests_per_s: float = _setting(
        20.0,
        "Calendars per second a backfill job hands to the processors (each costs one Calendar listing per "
        "2,500 events); a dry run lists at this rate too.",
    )
    # -- the conferencing service -----------------------------------------------------------
    provider_url: str | None = _setting(None, "Base URL of the conferencing REST API.")
    provider_api_key: Secret | None = _setting(None, "API key sent as a bearer token to the conferencing API.")
    provider_timeout_s: float = _setting(10.0, "Timeout in seconds for one conferencing API request.")
    vendor_client_id: str | None = _setting(
        None,
        "confsync's OAuth client at the conferencing service: users connect their vendor account to it "
        "(CONFSYNC_PROVIDER_URL's /oauth/authorize and /oauth/token).",
    )
    vendor_client_secret: Secret | None = _setting(None, "That OAuth client's secret.")
    # -- retries ----------------------------------------------------------------------------
    retry_max_attempts: int = _setting(8, "Attempts per command before it is nacked back to Pub/Sub.")
    retry_initial_s: float = _setting(0.5, "First backoff delay in seconds (then doubling, with jitter).")
    retry_max_s: float = _setting(30.0, "Longest single backoff delay in seconds.")
    retry_max_elapsed_s: float = _setting(120.0, "Give up retrying one command after this many seconds.")
    breaker_threshold: int = _setting(
        5, "Consecutive transient failures of the conferencing API that open its circuit breaker."
    )
    breaker_cooldown_s: float = _setting(
        30.0,
        "Seconds an open breaker stops calls before one trial call; a caller waits up to twice this "
        "for the breaker before its message is nacked.",
    )
    # -- serving ----------------------------------------------------------------------------
    local_mode: bool = _setting(
        default=False,
        help="Local development: push routes skip OIDC checks and the dev token is accepted. Refused on "
        "Cloud Run (K_SERVICE set) and by `confsync serve` on an address other than loopback.",
    )
    push_audience: str | None = _setting(None, "Expected audience of Pub/Sub push OIDC tokens.")
    push_service_account: str | None = _setting(None, "Expected email of the Pub/Sub push service account.")
    push_auth: PushAuth = _setting(
        "verify",
        "Who checks the signature of push requests' ID tokens: verify (confsync, against Google's "
        "certificates) or platform (Cloud Run IAM, which checks it and strips it before the request "
        "arrives; confsync still checks audience, issuer, email and expiry). platform ONLY behind Cloud "
        "Run IAM: anywhere else it accepts forged tokens.",
    )
    public_url: str | None = _setting(
        None,
        "Public base URL of the ingest service (the add-on API and the connect pages), e.g. "
        "https://confsync.example.com; the OAuth redirect URIs are its /connect/google and /connect/vendor.",
    )
    connect_ttl_s: int = _setting(
        900, "How long a connect link (the add-on's authenticationUrl) and one connect flow stay usable, in seconds."
    )
    dev_token: Secret | None = _setting(None, "Static bearer token for the add-on API, accepted in local mode only.")
    addon_audience: str | None = _setting(None, "Expected audience of the add-on's ID tokens (its OAuth client id).")
    google_certs_url: str = _setting(
        "https://www.googleapis.com/oauth2/v1/certs",
        "Where the keys that sign Google's ID tokens are published (PEM by key id): Google's own in "
        "production; the Calendar sandbox's /oauth2/v1/certs locally.",
    )
    allowed_domains: tuple[str, ...] = _setting(
        (),
        "Comma-separated domains whose users may call the add-on API (empty: any). A caller's domain is "
        "its ID token's hd (its Google Workspace domain); an account without hd (a consumer account) only "
        "matches as gmail.com, and only with a @gmail.com or @googlemail.com address (ingest/addon_access.py).",
    )
    addon_rate_per_min: float = _setting(
        60.0,
        "Add-on API requests one user may make per minute (a token bucket holding a minute's worth); "
        "more are answered 429 with Retry-After. Counted per process: N instances allow up to N times "
        "this. 0 turns the limit off.",
    )
    scheduler_service_account: str | None = _setting(
        None, "Expected email of the Cloud Scheduler service account that calls the channel routes."
    )
    cloud_run_service: str | None = _setting(
        None, "Set by Cloud Run (the service's name); local mode is refused where it is set.", env="K_SERVICE"
    )
    # -- bookkeeping, not a setting: which settings the environment set ---------------------
    from_environment: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        for info in self.describe():
            _check(info.name, info.value, info.env)
        if self.push_auth == "platform" and not self.cloud_run_service:
            raise ConfigError(
                "platform push auth trusts Cloud Run IAM to have checked each token's signature: "
                "refused where K_SERVICE is not set (not on Cloud Run)",
                variable="CONFSYNC_PUSH_AUTH",
            )
        if self.sync_max_interval_s < self.sync_min_interval_s:
            raise ConfigError(
                f"must be at least CONFSYNC_SYNC_MIN_INTERVAL_S ({self.sync_min_interval_s}), "
                f"got {self.sync_max_interval_s}",
                variable="CONFSYNC_SYNC_MAX_INTERVAL_S",
            )
        if self.local_mode and self.cloud_run_service:
            raise ConfigError(
                f"local mode turns authentication off: refused on Cloud Run (K_SERVICE={self.cloud_run_service})",
                variable="CONFSYNC_LOCAL_MODE",
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        _reject_unknown(env)
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for spec in _settings_fields():
            name = spec.metadata["env"] or PREFIX + spec.name.upper()
            if name in env:
                values[spec.name] = _parse(env[name], hints[spec.name], name)
        given = frozenset(values)
        if not values.get("store_url"):
            values["store_url"] = _default_store_url(env)
        if not values.get("vault_key_file"):
            values["vault_key_file"] = default_vault_key_file(values["store_url"])
        return cls(**values, from_environment=given)

    def describe(self) -> Iterator[SettingInfo]:
        """Each setting with its variable, shown value (secrets masked), default flag and help."""
        for spec in _settings_fields():
            value = getattr(self, spec.name)
            yield SettingInfo(
                name=spec.name,
                env=spec.metadata["env"] or PREFIX + spec.name.upper(),
                value=value,
                shown=_show(value),
                from_environment=spec.name in self.from_environment,
                help=spec.metadata["help"],
            )


@dataclass(frozen=True, slots=True)
class SettingInfo:
    name: str
    env: str
    value: object
    shown: str
    from_environment: bool
    help: str


def _settings_fields() -> tuple[Field[Any], ...]:
    return tuple(spec for spec in fields(Settings) if "help" in spec.metadata)


def _default_store_url(env: Mapping[str, str]) -> str:
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    data_home = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
    return f"sqlite:///{data_home / 'confsync' / 'confsync.sqlite'}"


def default_vault_key_file(store_url: str) -> str | None:
    """vault.key beside a SQLite store (the embedded default); none for a shared store."""
    if not store_url.startswith("sqlite:///"):
        return None
    return str(Path(store_url.removeprefix("sqlite:///")).parent / "vault.key")  # as store.sqlite.path_from_url


def _reject_unknown(env: Mapping[str, str]) -> None:
    known = {PREFIX + spec.name.upper() for spec in _settings_fields()}
    for name in sorted(env):
        if name.startswith(PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"no such setting{hint} (`confsync config` lists them all)", variable=name)


def _parse(raw: str, kind: Any, name: str) -> Any:  # noqa: PLR0911 - one return per supported type
    text = raw.strip()
    if isinstance(kind, types.UnionType):  # X | None: empty means None
        inner = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        return None if not text else _parse(raw, inner, name)
    if typing.get_origin(kind) is Literal:
        allowed = typing.get_args(kind)
        if text.lower() not in allowed:
            raise ConfigError(f"expected one of {', '.join(allowed)}, got {text!r}", variable=name)
        return text.lower()
    if kind is bool:
        if text.lower() not in _TRUE | _FALSE:
            raise ConfigError(f"expected true or false, got {text!r}", variable=name)
        return text.lower() in _TRUE
    if kind is int and not text.lstrip("+-").isdigit() and _is_float(text):
        raise ConfigError(f"expected a whole number, got {text!r}", variable=name)
    if kind is int or kind is float:
        try:
            return kind(text)
        except ValueError as err:
            raise ConfigError(f"expected a number, got {text!r}", variable=name) from err
    if kind is Secret:
        return Secret(text)
    if typing.get_origin(kind) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_PUBSUB_MAX_BATCH = 1000


# Settings whose help says "0 turns ... off".
_ZERO_TURNS_OFF = frozenset(
    {"notify_fold_s", "lag_repair_interval_s", "addon_rate_per_min", "delete_grace_s", "poll_after_s"}
)


def _check(name: str, value: object, env: str) -> None:
    """Cross-type sanity: positive numbers, http(s) URLs, non-empty names."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if name in _ZERO_TURNS_OFF and value < 0:
            raise ConfigError(f"must be 0 (off) or positive, got {value}", variable=env)
        if name not in _ZERO_TURNS_OFF and value <= 0:
            raise ConfigError(f"must be positive, got {value}", variable=env)
    is_url = name.endswith(("_url", "_endpoint")) and name != "store_url"
    if is_url and value is not None and not str(value).startswith(("http://", "https://")):
        raise ConfigError(f"must be an http(s) URL, got {value!r}", variable=env)
    if name == "store_url" and value and not str(value).startswith(("sqlite:///", "firestore://")):
        raise ConfigError(f"must start with sqlite:/// or firestore://, got {value!r}", variable=env)
    if name == "allowed_domains" and isinstance(value, tuple):
        for domain in value:
            if not isinstance(domain, str) or not domain or "@" in domain or any(c.isspace() for c in domain):
                raise ConfigError(f"expected domains like example.com, got {domain!r}", variable=env)
    if name.startswith("topic_") and not value:
        raise ConfigError("must not be empty", variable=env)
    if name == "pubsub_publish_max_messages" and isinstance(value, int) and value > _PUBSUB_MAX_BATCH:
        raise ConfigError(f"Pub/Sub takes at most {_PUBSUB_MAX_BATCH} messages per request, got {value}", variable=env)


def _show(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    return str(value)
