"""infra/terraform for users' accounts, checked without a cloud: each service is given exactly the
secrets its role reads and its account may read no other, the vault key never passes through
Terraform and outlives re-applies, the connect flow's settings reach the services that run it,
the OAuth redirect URIs are routes the public service serves, and Firestore expires connect
flows on its own. infra/README.md's secrets table is checked against the configuration."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import typing

from tests_support.terraform import ROOT, Parsed, locals_, outputs, resources, variables

from confsync.settings import Secret, Settings

README = ROOT / "infra" / "README.md"
SERVICES = ("ingest", "processor", "publisher")

# What each service must be given as secrets, by the setting each fills.
SECRET_SETTINGS = {
    "ingest": {  # the add-on API and the connect pages: both OAuth clients, sealing grants, signing links
        "CONFSYNC_PROVIDER_API_KEY",
        "CONFSYNC_OAUTH_CLIENT_SECRET",
        "CONFSYNC_VENDOR_CLIENT_SECRET",
        "CONFSYNC_VAULT_KEY",
    },
    "processor": {"CONFSYNC_OAUTH_CLIENT_SECRET", "CONFSYNC_VAULT_KEY"},  # users' Google grants
    "publisher": {"CONFSYNC_PROVIDER_API_KEY", "CONFSYNC_VENDOR_CLIENT_SECRET", "CONFSYNC_VAULT_KEY"},  # vendor grants
}


def secret_settings(parsed: Parsed, role: str) -> set[str]:
    secrets = locals_(parsed)["secrets"]
    return {secrets[name]["env"] for name in locals_(parsed)["roles"][role]["secrets"]}


def env_settings(parsed: Parsed, expression: str) -> set[str]:
    """The CONFSYNC_ names an env expression sets: its own keys and those of the locals it merges."""
    found = locals_(parsed)
    names = set(re.findall(r"\b(CONFSYNC_[A-Z0-9_]+) =", expression))
    for local in re.findall(r"\blocal\.(\w+)", expression):
        value = found.get(local)
        if isinstance(value, dict):
            names |= {key for key in value if key.startswith("CONFSYNC_")}
    return names


def secret_env_block(container: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """A container's dynamic env block that reads Secret Manager."""
    (block,) = [block["env"] for block in container["dynamic"] if "value_source" in str(block.get("env"))]
    return typing.cast("dict[str, typing.Any]", block)


def readers(parsed: Parsed, calendar_auth: str) -> dict[str, set[str]]:
    """Who may read each secret, evaluated as secrets.tf's secret_readers does for calendar_auth."""
    found = locals_(parsed)
    who: dict[str, set[str]] = {name: set() for name in found["secrets"]}
    for role, body in found["roles"].items():
        for name in [*body["secrets"], *(["calendar-credentials"] if body["calendar"] else [])]:
            who[name].add(role)
    backfill = ["calendar-credentials", *(["oauth-client-secret"] if calendar_auth == "user_tokens" else [])]
    for name in backfill:
        who[name].add("backfill")
    return who


def readme_readers(calendar_auth: str) -> dict[str, set[str]]:
    """The README's secrets table: secret -> who reads it ("backfill (`user_tokens` only)" counts
    only with calendar_auth = user_tokens)."""
    table: dict[str, set[str]] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        row = re.match(r"\| `confsync-([a-z-]+)` \|[^|]+\| ([^|]+) \|", line)
        if row is None:
            continue
        roles = set()
        for part in row.group(2).split(","):
            role = re.fullmatch(r"\s*(\w+)( \(`user_tokens` only\))?\s*", part)
            assert role is not None, f"README secrets table: cannot read {part!r}"
            if role.group(2) is None or calendar_auth == "user_tokens":
                roles.add(role.group(1))
        table[row.group(1)] = roles
    return table


# -- secrets: each service exactly what its role reads ---------------------------------------------


def test_each_service_is_given_exactly_the_secrets_its_role_reads(parsed: Parsed) -> None:
    for role in SERVICES:
        assert secret_settings(parsed, role) == SECRET_SETTINGS[role], role
    assert "CONFSYNC_OAUTH_CLIENT_SECRET" not in secret_settings(parsed, "publisher")
    assert "CONFSYNC_VENDOR_CLIENT_SECRET" not in secret_settings(parsed, "processor")
    # the service's secret variables are that list, each from its own secret
    service = resources(parsed)["google_cloud_run_v2_service.confsync"]
    (container,) = service["template"][0]["containers"]
    from_secrets = secret_env_block(container)
    assert from_secrets["for_each"] == "${toset(each.value.secrets)}"
    (env,) = from_secrets["content"]
    assert env["name"] == "${local.secrets[env.value].env}"
    assert env["value_source"][0]["secret_key_ref"][0]["secret"] == (
        "${google_secret_manager_secret.confsync[env.value].secret_id}"
    )


def test_every_secret_fills_a_setting_confsync_masks() -> None:
    hints = typing.get_type_hints(Settings)
    masked = {info.env for info in Settings().describe() if Secret in typing.get_args(hints[info.name])}
    assert set().union(*SECRET_SETTINGS.values()) <= masked


def test_an_account_may_read_exactly_the_secrets_its_workload_is_given(parsed: Parsed) -> None:
    found = locals_(parsed)
    expected_readers = (
        "${merge({for role, r in local.roles : role => concat(r.secrets, "
        'r.calendar ? ["calendar-credentials"] : [])}, '
        '{backfill = concat(local.backfill_secrets, ["calendar-credentials"])})}'
    )
    assert found["secret_readers"] == expected_readers
    assert found["secret_grants"].startswith("${merge([for who, names in local.secret_readers : ")
    assert found["backfill_secrets"] == '${var.calendar_auth == "user_tokens" ? ["oauth-client-secret"] : []}'
    grants = resources(parsed)["google_secret_manager_secret_iam_member.readers"]
    assert grants["for_each"] == "${local.secret_grants}"
    assert grants["role"] == "roles/secretmanager.secretAccessor"
    # the backfill job reads the same list it is granted
    job = resources(parsed)["google_cloud_run_v2_job.backfill"]
    (container,) = job["template"][0]["template"][0]["containers"]
    assert secret_env_block(container)["for_each"] == "${toset(local.backfill_secrets)}"

    service_account = readers(parsed, "service_account")
    assert service_account["vault-key"] == {"ingest", "processor", "publisher"}
    assert service_account["oauth-client-secret"] == {"ingest", "processor"}
    assert service_account["vendor-client-secret"] == {"ingest", "publisher"}
    assert readers(parsed, "user_tokens")["oauth-client-secret"] == {"ingest", "processor", "backfill"}
    for calendar_auth in ("service_account", "user_tokens"):
        assert readme_readers(calendar_auth) == readers(parsed, calendar_auth), f"infra/README.md, {calendar_auth}"


# -- the vault key ------------------------------------------------------------------------------------


def test_the_vault_key_never_passes_through_terraform_and_outlives_reapplies(parsed: Parsed) -> None:
    declared = resources(parsed)
    # no value in the state file: Terraform neither generates a secret nor writes a version
    assert not [name for name in declared if name.startswith(("google_secret_manager_secret_version.", "random_"))]
    (terraform,) = parsed["versions.tf"]["terraform"]
    assert {key for key in terraform["required_providers"][0] if not key.startswith("__")} == {"google"}
    assert "vault-key" in locals_(parsed)["secrets"]
    secret = declared["google_secret_manager_secret.confsync"]
    assert secret["deletion_protection"] == "${var.deletion_protection}"
    assert variables(parsed)["deletion_protection"]["default"] is True
    assert secret["version_destroy_ttl"] == '${each.key == "vault-key" ? "2592000s" : null}'
    # every instance opens grants with the same key version, until an apply moves them all
    (container,) = declared["google_cloud_run_v2_service.confsync"]["template"][0]["containers"]
    (ref,) = secret_env_block(container)["content"][0]["value_source"][0]["secret_key_ref"]
    assert ref["version"] == '${env.value == "vault-key" ? var.vault_key_version : "latest"}'
    assert variables(parsed)["vault_key_version"]["default"] == "1"


def test_the_readme_fills_every_secret_and_makes_a_vault_key_the_services_accept(parsed: Parsed) -> None:
    """The README's vault-key command, run up to its pipe into gcloud, prints what Secret Manager
    will hold (a trailing newline too); the settings and the vault take it."""
    from accounts.vault import open_vault  # noqa: PLC0415 - the stage that reads the key

    readme = README.read_text(encoding="utf-8")
    for name in locals_(parsed)["secrets"]:
        assert f"gcloud secrets versions add confsync-{name} " in readme, f"the README does not fill {name}"
    (line,) = [line for line in readme.splitlines() if "gcloud secrets versions add confsync-vault-key" in line]
    command = line.split("| gcloud", 1)[0].strip()
    made = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True, timeout=10).stdout
    settings = Settings.from_env({"CONFSYNC_VAULT_KEY": made, "CONFSYNC_STORE_URL": "firestore://p/confsync"})
    assert settings.vault_key is not None
    open_vault(settings)
    assert "## Rotating the vault key" in readme


# -- the connect flow's settings -------------------------------------------------------------------


def test_the_connect_settings_reach_the_services_that_run_the_flow(parsed: Parsed) -> None:
    roles = locals_(parsed)["roles"]
    ingest, processor, publisher = (env_settings(parsed, roles[role]["env"]) for role in SERVICES)
    assert {
        "CONFSYNC_OAUTH_CLIENT_ID", "CONFSYNC_VENDOR_CLIENT_ID", "CONFSYNC_PUBLIC_URL", "CONFSYNC_DELEGATED_DOMAINS",
        "CONFSYNC_ALLOWED_DOMAINS", "CONFSYNC_ADDON_RATE_PER_MIN", "CONFSYNC_PROVIDER_URL",
    } <= ingest  # fmt: skip
    assert {"CONFSYNC_OAUTH_CLIENT_ID", "CONFSYNC_DELEGATED_DOMAINS"} <= processor
    assert "CONFSYNC_VENDOR_CLIENT_ID" not in processor
    assert {"CONFSYNC_VENDOR_CLIENT_ID", "CONFSYNC_PROVIDER_URL"} <= publisher
    assert not {"CONFSYNC_OAUTH_CLIENT_ID", "CONFSYNC_DELEGATED_DOMAINS"} & publisher
    assert "CONFSYNC_PUBLIC_URL = local.public_base_url" in roles["ingest"]["env"]
    assert locals_(parsed)["delegated_env"] == {"CONFSYNC_DELEGATED_DOMAINS": '${join(",", var.delegated_domains)}'}


def test_the_connect_variables_default_to_the_settings_defaults(parsed: Parsed) -> None:
    declared, defaults = variables(parsed), Settings()
    assert declared["addon_rate_per_min"]["default"] == defaults.addon_rate_per_min
    assert tuple(declared["allowed_domains"]["default"]) == defaults.allowed_domains
    assert tuple(declared["delegated_domains"]["default"]) == defaults.delegated_domains
    # delegation is the calendar service account's: only with calendar_auth = service_account
    conditions = [v["condition"] for v in declared["delegated_domains"]["validation"]]
    assert '${length(var.delegated_domains) == 0 || var.calendar_auth == "service_account"}' in conditions


def test_the_redirect_uris_are_connect_routes_the_public_service_serves(parsed: Parsed) -> None:
    uris = locals_(parsed)["oauth_redirect_uris"]
    assert uris == {
        "google": "${local.public_base_url}/connect/google",
        "google_settings": "${local.public_base_url}/settings/google",
        "vendor": "${local.public_base_url}/connect/vendor",
    }
    assert outputs(parsed)["oauth_redirect_uris"]["value"] == "${local.oauth_redirect_uris}"
    source = (ROOT / "accounts" / "routes.py").read_text(encoding="utf-8")
    served = set(re.findall(r'Route\("(/(?:connect|settings)[^"]*)", \w+, methods=\["GET"\]\)', source))
    assert {uri.removeprefix("${local.public_base_url}") for uri in uris.values()} <= served
    assert "/connect" in served, "the page a connect link opens"
    # browsers reach them: ingest takes all traffic, and no IAM check stands before its routes
    assert locals_(parsed)["roles"]["ingest"]["ingress"] == "INGRESS_TRAFFIC_ALL"
    service = resources(parsed)["google_cloud_run_v2_service.confsync"]
    assert service["invoker_iam_disabled"] == '${each.key == "ingest"}'
    readme = README.read_text(encoding="utf-8")
    assert "https://PUBLIC_DOMAIN/connect/google" in readme
    assert "https://PUBLIC_DOMAIN/connect/vendor" in readme
    assert "https://PUBLIC_DOMAIN/settings/google" in readme


# -- Firestore ------------------------------------------------------------------------------------


def test_firestore_expires_connect_flows_on_their_own(parsed: Parsed) -> None:
    from confsync.store.records import ConnectFlow  # noqa: PLC0415 - the record the TTL field belongs to

    ttl = resources(parsed)["google_firestore_field.connect_flows_ttl"]
    assert ttl["database"] == "${google_firestore_database.confsync.name}"
    assert ttl["ttl_config"], "a TTL policy on the field"
    assert "index_config" not in ttl, "Store.purge_flows queries expires_at: keep its automatic index"
    # the collection and field the store writes (no prefix in production)
    source = (ROOT / "confsync" / "store" / "firestore_accounts.py").read_text(encoding="utf-8")
    assert f'collection(f"{{prefix}}{ttl["collection"]}")' in source
    assert ttl["field"] in {field.name for field in dataclasses.fields(ConnectFlow)}
    assert f'"{ttl["field"]}": flow.{ttl["field"]}' in source
