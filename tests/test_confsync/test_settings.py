"""Settings: read once from the environment, validated at start, secrets never shown."""

from __future__ import annotations

import pytest

from confsync.errors import ConfigError
from confsync.settings import Secret, Settings


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = Settings.from_env({"HOME": "/home/ada"})
    assert settings.project_id == "confsync-local"
    assert settings.conference_solution_names == ("My Web Conference", "My Recorded Web Conference")
    assert settings.store_url == "sqlite:////home/ada/.local/share/confsync/confsync.sqlite"
    assert settings.local_mode is False
    assert settings.from_environment == frozenset()


def test_the_default_store_follows_xdg_data_home() -> None:
    settings = Settings.from_env({"XDG_DATA_HOME": "/data"})
    assert settings.store_url == "sqlite:////data/confsync/confsync.sqlite"


def test_every_type_is_parsed_from_its_variable() -> None:
    settings = Settings.from_env(
        {
            "CONFSYNC_CHANNEL_TTL_S": "3600",
            "CONFSYNC_PROVIDER_TIMEOUT_S": "2.5",
            "CONFSYNC_LOCAL_MODE": "yes",
            "CONFSYNC_CONFERENCE_SOLUTION_NAMES": " Acme Meet , ,Acme Webinar ",
            "CONFSYNC_LOG_FORMAT": "JSON",
            "CONFSYNC_PROVIDER_API_KEY": "k-123",
            "CONFSYNC_WEBHOOK_URL": "",
            "PUBSUB_EMULATOR_HOST": "127.0.0.1:8085",
            "CONFSYNC_STORE_URL": "firestore://prod-project",
        }
    )
    assert settings.channel_ttl_s == 3600
    assert settings.provider_timeout_s == 2.5
    assert settings.local_mode is True
    assert settings.conference_solution_names == ("Acme Meet", "Acme Webinar")
    assert settings.log_format == "json"
    assert settings.provider_api_key == Secret("k-123")
    assert settings.webhook_url is None
    assert settings.pubsub_emulator_host == "127.0.0.1:8085"
    assert settings.store_url == "firestore://prod-project"
    assert "channel_ttl_s" in settings.from_environment


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("CONFSYNC_CHANNEL_TTL_S", "a week", "expected a number"),
        ("CONFSYNC_CHANNEL_TTL_S", "0", "must be positive"),
        ("CONFSYNC_RETAIN_DAYS", "0", "must be positive"),
        ("CONFSYNC_RETAIN_DAYS", "-30", "must be positive"),
        ("CONFSYNC_RETAIN_DAYS", "90.5", "expected a whole number, got '90.5'"),
        ("CONFSYNC_RETAIN_DAYS", "3 months", "expected a number, got '3 months'"),
        ("CONFSYNC_RETRY_MAX_S", "-1", "must be positive"),
        ("CONFSYNC_LAG_REPAIR_INTERVAL_S", "-1", "must be 0 (off) or positive"),
        ("CONFSYNC_NOTIFY_FOLD_S", "-0.1", "must be 0 (off) or positive"),
        ("CONFSYNC_LOCAL_MODE", "maybe", "expected true or false"),
        ("CONFSYNC_LOG_LEVEL", "verbose", "expected one of debug, info, warning, error"),
        ("CONFSYNC_PUSH_AUTH", "trust", "expected one of verify, platform"),
        ("CONFSYNC_PROVIDER_URL", "conf.example.com", "must be an http(s) URL"),
        ("CONFSYNC_STORE_URL", "postgres://db", "must start with sqlite:/// or firestore://"),
        ("CONFSYNC_TOPIC_CONFERENCE_COMMANDS", " ", "must not be empty"),
        ("CONFSYNC_PUBSUB_PUBLISH_MAX_MESSAGES", "5000", "Pub/Sub takes at most 1000 messages per request"),
    ],
)
def test_a_bad_value_fails_at_start_naming_the_variable(variable: str, value: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.variable == variable
    assert variable in str(caught.value)
    assert complaint in str(caught.value)


def test_records_are_kept_ninety_days_unless_told_otherwise() -> None:
    assert Settings.from_env({}).retain_days == 90
    assert Settings.from_env({"CONFSYNC_RETAIN_DAYS": "30"}).retain_days == 30


def test_zero_turns_the_lag_repair_loop_off_as_its_help_says() -> None:
    assert Settings.from_env({"CONFSYNC_LAG_REPAIR_INTERVAL_S": "0"}).lag_repair_interval_s == 0


def test_a_misspelt_variable_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean CONFSYNC_PROVIDER_URL"):
        Settings.from_env({"CONFSYNC_PROVIDER_ULR": "http://x"})


def test_secrets_never_show_in_repr_str_or_describe() -> None:
    settings = Settings.from_env({"CONFSYNC_PROVIDER_API_KEY": "super-secret", "CONFSYNC_DEV_TOKEN": "dev-secret"})
    shown = repr(settings) + str(settings) + repr(list(settings.describe()))
    assert "super-secret" not in shown
    assert "dev-secret" not in shown
    assert settings.provider_api_key is not None
    assert settings.provider_api_key.reveal() == "super-secret"


def test_every_setting_is_documented() -> None:
    for info in Settings().describe():
        assert info.help.endswith("."), info.name
        assert info.env.startswith("CONFSYNC_") or info.env.endswith("_EMULATOR_HOST") or info.env == "K_SERVICE"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.project_id = "other"  # type: ignore[misc]


def test_push_tokens_are_verified_here_unless_the_platform_is_said_to_check_them() -> None:
    assert Settings.from_env({}).push_auth == "verify"
    on_cloud_run = {"CONFSYNC_PUSH_AUTH": "Platform", "K_SERVICE": "confsync-publisher"}
    assert Settings.from_env(on_cloud_run).push_auth == "platform"


def test_trusting_the_platform_is_refused_off_cloud_run() -> None:
    """Anywhere but behind Cloud Run IAM, platform mode would accept unsigned tokens."""
    with pytest.raises(ConfigError, match="not on Cloud Run") as caught:
        Settings.from_env({"CONFSYNC_PUSH_AUTH": "platform"})
    assert caught.value.variable == "CONFSYNC_PUSH_AUTH"


def test_local_mode_is_refused_on_cloud_run() -> None:
    assert Settings.from_env({"K_SERVICE": "confsync-ingest"}).cloud_run_service == "confsync-ingest"
    with pytest.raises(ConfigError, match=r"refused on Cloud Run \(K_SERVICE=confsync-ingest\)") as caught:
        Settings.from_env({"CONFSYNC_LOCAL_MODE": "true", "K_SERVICE": "confsync-ingest"})
    assert caught.value.variable == "CONFSYNC_LOCAL_MODE"
