"""infra/terraform, checked without a cloud: every file parses (python-hcl2), every reference
resolves, the Pub/Sub names and policies are the ones `confsync pubsub bootstrap` creates,
and what the services are told (settings, routes, commands, log lines, indexes) exists in
the code. checkov's own run is in test_checkov.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
from google.api_core.retry import Retry
from google.cloud import pubsub_v1

from confsync.settings import Settings
from confsync.store.firestore import COMPOSITE_INDEXES
from confsync.transport.pubsub import bootstrap
from confsync.transport.topology import terraform_vars, topology

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "infra" / "terraform"
OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False)

# Names Terraform itself binds inside expressions.
BUILTIN_ROOTS = frozenset({"each", "count", "self", "path", "terraform"})


def tf_files() -> list[Path]:
    return sorted(TERRAFORM.glob("*.tf"))


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict[str, Any]]:
    documents = {}
    for path in tf_files():
        with path.open(encoding="utf-8") as handle:
            documents[path.name] = hcl2.load(handle, serialization_options=OPTIONS)
    return documents


def blocks(parsed: dict[str, dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    for document in parsed.values():
        yield from document.get(kind, [])


def unquote(label: str) -> str:
    return label.strip('"')


def resources(parsed: dict[str, dict[str, Any]], kind: str = "resource") -> dict[str, dict[str, Any]]:
    """'type.name' -> body, for resources (or 'data.type.name' for data sources)."""
    found = {}
    for block in blocks(parsed, kind):
        for rtype, named in block.items():
            for name, body in named.items():
                prefix = "data." if kind == "data" else ""
                found[f"{prefix}{unquote(rtype)}.{unquote(name)}"] = body
    return found


def variables(parsed: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {unquote(name): body for block in blocks(parsed, "variable") for name, body in block.items()}


def locals_(parsed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {name: value for block in blocks(parsed, "locals") for name, value in block.items()}


# -- a small reader of HCL expressions: the code parts, outside string literals -----------------


def code_of(expression: str) -> str:
    """The code of an interpolated expression, with string literals blanked (their own
    ``${...}`` templates kept), so a literal such as "roles/run.invoker" is not a reference."""
    out: list[str] = []
    stack: list[str] = []  # "code" or "string" for each open level; empty: outside any ${ }
    i = 0
    while i < len(expression):
        char = expression[i]
        if not stack or stack[-1] == "string":
            if expression.startswith("${", i):
                stack.append("code")
                out.append(" ")
                i += 2
                continue
            if char == '"' and stack:
                stack.pop()
        elif char == "}":
            stack.pop()
            out.append(" ")
        else:
            if char == '"':
                stack.append("string")
            elif char == "{":
                stack.append("code")
            out.append(char if char != '"' else " ")
        i += 1
    return "".join(out)


REFERENCE = re.compile(r"(?<![\w.\"-])([a-z_][a-z0-9_]*)((?:\.[a-z_][a-z0-9_-]*)+)")
FOR_BINDING = re.compile(r"\bfor\s+([a-z_]\w*)(?:\s*,\s*([a-z_]\w*))?\s+in\b")


def expressions(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if "${" in value:
            yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from expressions(key)
            yield from expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from expressions(item)


def dynamic_iterators(value: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "dynamic":
                for block in item if isinstance(item, list) else [item]:
                    names |= {unquote(name) for name in block}
            names |= dynamic_iterators(item)
    elif isinstance(value, list):
        for item in value:
            names |= dynamic_iterators(item)
    return names


def references(parsed: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, str]]:
    """(file, reference, expression) for every reference in every expression."""
    for filename, document in parsed.items():
        bound = BUILTIN_ROOTS | dynamic_iterators(document)
        for expression in expressions(document):
            code = code_of(expression)
            local_names = {name for match in FOR_BINDING.finditer(code) for name in match.groups() if name}
            for match in REFERENCE.finditer(code):
                root, rest = match.group(1), match.group(2)
                if root in bound or root in local_names:
                    continue
                yield filename, root + rest, expression


# -- the files ----------------------------------------------------------------------------------


def test_every_terraform_file_parses_and_the_configuration_is_complete(parsed: dict[str, dict[str, Any]]) -> None:
    assert {path.name for path in tf_files()} >= {
        "versions.tf", "variables.tf", "pubsub.tf", "run.tf", "iam.tf", "secrets.tf",
        "scheduler.tf", "firestore.tf", "monitoring.tf", "outputs.tf",
    }  # fmt: skip
    declared = resources(parsed)
    for needed in (
        "google_pubsub_topic.confsync",
        "google_pubsub_subscription.confsync",
        "google_cloud_run_v2_service.confsync",
        "google_cloud_run_v2_job.backfill",
        "google_cloud_scheduler_job.ingest_task",
        "google_cloud_scheduler_job.backfill",
        "google_firestore_database.confsync",
        "google_firestore_index.lagging_calendars",
        "google_secret_manager_secret.confsync",
        "google_logging_metric.count",
        "google_logging_metric.sync_lag",
        "google_monitoring_alert_policy.any",
        "google_monitoring_alert_policy.sync_lag",
    ):
        assert needed in declared, f"{needed} is not declared"
    outputs = {unquote(name) for block in blocks(parsed, "output") for name in block}
    assert {"webhook_url", "addon_api_url"} <= outputs


def test_every_reference_resolves_to_a_declaration(parsed: dict[str, dict[str, Any]]) -> None:
    declared = set(resources(parsed)) | set(resources(parsed, "data"))
    variable_names = set(variables(parsed))
    local_names = set(locals_(parsed))
    unresolved = []
    seen = 0
    for filename, reference, expression in references(parsed):
        seen += 1
        parts = reference.split(".")
        if parts[0] == "var":
            ok = parts[1] in variable_names
        elif parts[0] == "local":
            ok = parts[1] in local_names
        elif parts[0] == "data":
            ok = ".".join(parts[:3]) in declared
        else:
            ok = ".".join(parts[:2]) in declared
        if not ok:
            unresolved.append(f"{filename}: {reference}  (in {expression[:80]})")
    assert seen > 100, "the expression reader found too few references to be reading the files"
    assert not unresolved, "unresolved references:\n" + "\n".join(unresolved)


def test_the_reference_check_catches_a_misspelt_reference(parsed: dict[str, dict[str, Any]]) -> None:
    broken = {"x.tf": {"resource": [{"google_pubsub_topic": {"t": {"name": "${var.pubsub.topics.x}"}}}]}}
    broken["y.tf"] = {"output": [{"o": {"value": "${google_pubsub_topc.confsync.id} ${local.nope}"}}]}
    found = {reference for _, reference, _ in references(broken)}
    assert found == {"var.pubsub.topics.x", "google_pubsub_topc.confsync.id", "local.nope"}
    literal = code_of('${toset(["roles/run.invoker", "a.b"])} and ${"x-${var.region}.y"}')
    assert [m.group(0) for m in REFERENCE.finditer(literal)] == ["var.region"]


def test_every_variable_has_a_description_and_the_free_form_ones_are_validated(
    parsed: dict[str, dict[str, Any]],
) -> None:
    declared = variables(parsed)
    assert all(body.get("description") for body in declared.values()), "a variable without a description"
    for name in (
        "project_id", "region", "image", "public_domain", "addon_oauth_client_id", "provider_url", "pubsub",
        "notification_channels", "backlog_alert_s",
    ):  # fmt: skip
        assert declared[name].get("validation"), f"variable {name} is not validated"


# -- one source of truth for Pub/Sub ------------------------------------------------------------


def test_the_pubsub_variable_is_what_bootstrap_prints(parsed: dict[str, dict[str, Any]]) -> None:
    default = variables(parsed)["pubsub"]["default"]
    expected = terraform_vars(Settings())["pubsub"]
    assert default == expected

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFSYNC_") and k != "PUBSUB_EMULATOR_HOST"}
    printed = subprocess.run(
        [sys.executable, "-m", "stack.cli", "pubsub", "bootstrap", "--print-terraform-vars"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(printed.stdout) == {"pubsub": default}


def test_changed_settings_print_changed_terraform_vars() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFSYNC_")}
    env.update(CONFSYNC_TOPIC_CONFERENCE_COMMANDS="meetings", CONFSYNC_PUBSUB_MAX_DELIVERY_ATTEMPTS="9")
    printed = subprocess.run(
        [sys.executable, "-m", "stack.cli", "pubsub", "bootstrap", "--print-terraform-vars"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    pubsub = json.loads(printed.stdout)["pubsub"]
    assert pubsub["topics"]["conference_commands"] == "meetings"
    assert pubsub["subscriptions"]["conference-commands-publisher"]["topic"] == "meetings"
    assert pubsub["subscriptions"]["conference-commands-publisher"]["max_delivery_attempts"] == 9


def test_the_subscriptions_take_every_setting_from_the_variable(parsed: dict[str, dict[str, Any]]) -> None:
    body = resources(parsed)["google_pubsub_subscription.confsync"]
    assert body["for_each"] == "${var.pubsub.subscriptions}"
    assert body["name"] == "${each.key}"
    assert body["topic"] == "${google_pubsub_topic.confsync[each.value.topic].id}"
    assert body["ack_deadline_seconds"] == "${each.value.ack_deadline_seconds}"
    assert body["enable_message_ordering"] == "${each.value.ordered}"
    assert body["message_retention_duration"] == "${each.value.retention_seconds}s"
    assert body["expiration_policy"][0]["ttl"] == ""
    dynamic = {unquote(name): block for item in body["dynamic"] for name, block in item.items()}
    assert "each.value.min_backoff_seconds == null" in dynamic["retry_policy"]["for_each"]
    (retry,) = dynamic["retry_policy"]["content"]
    assert retry["minimum_backoff"] == "${retry_policy.value.min_backoff_seconds}s"
    assert retry["maximum_backoff"] == "${retry_policy.value.max_backoff_seconds}s"
    dead = dynamic["dead_letter_policy"]
    assert "each.value.dead_letter_topic == null" in dead["for_each"]
    (content,) = dead["content"]
    dead_topic = "google_pubsub_topic.confsync[dead_letter_policy.value.dead_letter_topic].id"
    assert content["dead_letter_topic"] == "${" + dead_topic + "}"
    assert content["max_delivery_attempts"] == "${dead_letter_policy.value.max_delivery_attempts}"
    (push,) = dynamic["push_config"]["content"]
    # the services serve their push routes at /pubsub/TOPIC (processors/app.py, publishers/app.py)
    assert push["push_endpoint"].endswith("/pubsub/${each.value.topic}")
    (oidc,) = push["oidc_token"]
    assert oidc["audience"] == "${var.push_audience}"
    topics = resources(parsed)["google_pubsub_topic.confsync"]
    assert topics["for_each"] == "${local.topic_names}"
    assert locals_(parsed)["topic_names"] == "${toset(values(var.pubsub.topics))}"


def test_bootstrap_creates_on_the_emulator_what_terraform_declares(
    pubsub_emulator_host: str, parsed: dict[str, dict[str, Any]]
) -> None:
    declared = variables(parsed)["pubsub"]["default"]
    settings = Settings(project_id=f"infra-{uuid.uuid4().hex[:8]}", pubsub_emulator_host=pubsub_emulator_host)
    report = bootstrap(settings, topology(settings))
    assert len(report.created) == len(declared["topics"]) + len(declared["subscriptions"])
    subscriber = pubsub_v1.SubscriberClient()
    try:
        for name, wanted in declared["subscriptions"].items():
            path = subscriber.subscription_path(settings.project_id, name)
            got = subscriber.get_subscription(subscription=path, retry=Retry(timeout=20), timeout=20)
            assert got.topic.endswith(f"/topics/{wanted['topic']}")
            assert got.ack_deadline_seconds == wanted["ack_deadline_seconds"]
            assert got.enable_message_ordering == wanted["ordered"]
            if wanted["min_backoff_seconds"] is None:
                assert not got._pb.HasField("retry_policy"), f"{name}: a nack must bring a message back at once"
            else:
                assert got.retry_policy.minimum_backoff.total_seconds() == wanted["min_backoff_seconds"]
                assert got.retry_policy.maximum_backoff.total_seconds() == wanted["max_backoff_seconds"]
            assert got.message_retention_duration.total_seconds() == wanted["retention_seconds"]
            # an expiration policy without a ttl: never deleted for idleness, as Terraform's ttl = ""
            assert got._pb.HasField("expiration_policy")
            assert not got.expiration_policy.ttl
            if wanted["dead_letter_topic"] is None:
                assert not got.dead_letter_policy.dead_letter_topic
            else:
                assert got.dead_letter_policy.dead_letter_topic.endswith(f"/topics/{wanted['dead_letter_topic']}")
                assert got.dead_letter_policy.max_delivery_attempts == wanted["max_delivery_attempts"]
    finally:
        subscriber.close()


# -- what the services are told exists in the code -------------------------------------------


def service_env_names(parsed: dict[str, dict[str, Any]]) -> set[str]:
    """Every CONFSYNC_ name the configuration sets, as keys or as values of the secret maps."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in tf_files())
    return set(re.findall(r"\bCONFSYNC_[A-Z0-9_]+\b", text))


def test_every_setting_the_services_get_is_one_confsync_reads(parsed: dict[str, dict[str, Any]]) -> None:
    known = {info.env for info in Settings().describe()}
    given = service_env_names(parsed)
    assert len(given) >= 20
    assert given <= known, f"not confsync settings: {sorted(given - known)}"


def test_the_services_run_commands_the_cli_has(parsed: dict[str, dict[str, Any]]) -> None:
    roles = locals_(parsed)["roles"]
    commands = [role["args"] for role in roles.values()]
    (job,) = resources(parsed)["google_cloud_run_v2_job.backfill"]["template"]
    commands.append(job["template"][0]["containers"][0]["args"])
    assert len(commands) == 4
    for args in commands:
        done = subprocess.run(
            [sys.executable, "-m", "stack.cli", *args, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"confsync {' '.join(args)}: {done.stderr}"


def test_the_scheduler_calls_routes_the_ingest_service_serves(parsed: dict[str, dict[str, Any]]) -> None:
    source = (ROOT / "ingest" / "app.py").read_text(encoding="utf-8")
    served = set(re.findall(r'Route\("(/tasks/[^"]+)", [\w()]+, methods=\["POST"\]\)', source))
    tasks = locals_(parsed)["ingest_tasks"]
    paths = {task["path"].split("?")[0] for task in tasks.values()}
    assert paths == {"/tasks/renew-channels", "/tasks/repair-lag"}
    assert paths <= served


def test_the_log_metrics_match_lines_the_code_logs(parsed: dict[str, dict[str, Any]]) -> None:
    declared = resources(parsed)
    filters = [metric["filter"] for metric in locals_(parsed)["log_metrics"].values()]
    filters.append(declared["google_logging_metric.sync_lag"]["filter"])
    messages = {m for text in filters for m in re.findall(r'\\?"([a-z][^"\\]+)\\?"', text.split("AND", 2)[-1])}
    assert {"message dead-lettered", "lag repaired", "channel renewal failed; will retry"} <= messages
    source = "\n".join(
        path.read_text(encoding="utf-8")
        for package in ("confsync", "ingest", "processors", "publishers")
        for path in (ROOT / package).rglob("*.py")
    )
    for message in messages:
        assert re.search(r"log\.\w+\(\s*" + re.escape(json.dumps(message)), source), f"nothing logs {message!r}"
    assert "oldest_lag_s=" in (ROOT / "ingest" / "lag.py").read_text(encoding="utf-8")
    assert declared["google_logging_metric.sync_lag"]["value_extractor"] == "EXTRACT(jsonPayload.oldest_lag_s)"


def test_the_firestore_indexes_are_the_ones_the_store_queries_need(parsed: dict[str, dict[str, Any]]) -> None:
    declared = {
        body["collection"]: tuple(field["field_path"] for field in body["fields"])
        for name, body in resources(parsed).items()
        if name.startswith("google_firestore_index.")
    }
    assert declared == COMPOSITE_INDEXES


def test_only_ingest_is_public_and_only_pubsub_invokes_the_workers(parsed: dict[str, dict[str, Any]]) -> None:
    declared = resources(parsed)
    # public without an allUsers grant, which domain-restricted sharing (new organisations) refuses
    text = json.dumps(declared)
    assert "allUsers" not in text
    assert "allAuthenticatedUsers" not in text
    service = declared["google_cloud_run_v2_service.confsync"]
    assert service["invoker_iam_disabled"] == '${each.key == "ingest"}'
    roles = locals_(parsed)["roles"]
    assert [role for role, body in roles.items() if body["ingress"] == "INGRESS_TRAFFIC_ALL"] == ["ingest"]
    for worker in ("processor", "publisher"):
        assert roles[worker]["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
        assert roles[worker]["audiences"] == ["${var.push_audience}"]
    invokers = declared["google_cloud_run_v2_service_iam_member.push_invokes"]
    assert invokers["member"] == '${google_service_account.confsync["push"].member}'
    assert invokers["for_each"] == '${toset(["processor", "publisher"])}'


def test_the_pinned_provider_knows_invoker_iam_disabled(parsed: dict[str, dict[str, Any]]) -> None:
    """google provider 6.8.0 added invoker_iam_disabled to google_cloud_run_v2_service."""
    (terraform,) = parsed["versions.tf"]["terraform"]
    google = terraform["required_providers"][0]["google"]
    lowest = re.search(r">=\s*([0-9.]+)", google["version"])
    assert lowest is not None
    assert tuple(int(part) for part in lowest.group(1).split(".")) >= (6, 8)


# -- under load: timeouts, deadlines, retries ----------------------------------------------------


def test_the_workers_request_timeout_is_their_subscriptions_ack_deadline(parsed: dict[str, dict[str, Any]]) -> None:
    """A push handler answers within the ack deadline; Cloud Run must not run a request longer
    than that, or Pub/Sub redelivers a message whose first delivery is still being handled."""
    found = locals_(parsed)
    expression = "${{for s in values(local.worker_subscriptions) : s.topic => s.ack_deadline_seconds}}"
    assert found["ack_deadline_s"] == expression
    pubsub = variables(parsed)["pubsub"]["default"]
    workers = {s["topic"]: s for s in pubsub["subscriptions"].values() if s["dead_letter_topic"] is not None}
    for topic_role, role in (("calendar_changes", "processor"), ("conference_commands", "publisher")):
        key = f"${{(var.pubsub.topics.{topic_role})}}"
        assert found["push_service_uri"][key] == f'${{google_cloud_run_v2_service.confsync["{role}"].uri}}'
        timeout = found["roles"][role]["timeout"]
        assert timeout == f"${{local.ack_deadline_s[var.pubsub.topics.{topic_role}]}}s"
        ack_deadline = workers[pubsub["topics"][topic_role]]["ack_deadline_seconds"]
        assert ack_deadline == 60 == Settings().pubsub_ack_deadline_s


def test_an_overload_has_hours_of_retries_before_anything_is_dead_lettered(parsed: dict[str, dict[str, Any]]) -> None:
    pubsub = variables(parsed)["pubsub"]["default"]
    workers = [s for s in pubsub["subscriptions"].values() if s["dead_letter_topic"] is not None]
    assert len(workers) == 2
    for sub in workers:
        assert sub["max_delivery_attempts"] >= 20
        assert sub["max_backoff_seconds"] == 600  # Pub/Sub's longest
        waited = sum(min(sub["min_backoff_seconds"] * 2**n, sub["max_backoff_seconds"]) for n in range(19))
        assert waited > 3600


def test_ingest_runs_a_scheduled_task_as_long_as_the_scheduler_waits(parsed: dict[str, dict[str, Any]]) -> None:
    found = locals_(parsed)
    assert found["roles"]["ingest"]["timeout"] == "${local.ingest_timeout_s}s"
    assert found["ingest_timeout_s"] == "${max([for task in values(local.ingest_tasks) : task.deadline_s] ...)}"
    deadlines = [task["deadline_s"] for task in found["ingest_tasks"].values()]
    assert max(deadlines) <= 1800, "Cloud Scheduler's longest attempt deadline for HTTP targets"
    job = resources(parsed)["google_cloud_scheduler_job.ingest_task"]
    assert job["attempt_deadline"] == "${each.value.deadline_s}s"


# -- first apply: APIs, the image's repository, the domain ------------------------------------------

# The API behind each resource type's prefix; a new resource type must say which API it needs.
API_OF = {
    "google_artifact_registry_": "artifactregistry.googleapis.com",
    "google_cloud_run_": "run.googleapis.com",
    "google_cloud_scheduler_": "cloudscheduler.googleapis.com",
    "google_firestore_": "firestore.googleapis.com",
    "google_logging_": "logging.googleapis.com",
    "google_monitoring_": "monitoring.googleapis.com",
    "google_project_iam_": "cloudresourcemanager.googleapis.com",
    "google_project_service": "serviceusage.googleapis.com",
    "google_pubsub_": "pubsub.googleapis.com",
    "google_secret_manager_": "secretmanager.googleapis.com",
    "google_service_account": "iam.googleapis.com",
}


def enabled_apis(parsed: dict[str, dict[str, Any]]) -> set[str]:
    for_each = resources(parsed)["google_project_service.apis"]["for_each"]
    return set(re.findall(r'"([a-z0-9-]+\.googleapis\.com)"', for_each))


def test_every_api_the_resources_and_the_deploy_steps_need_is_enabled(parsed: dict[str, dict[str, Any]]) -> None:
    apis = enabled_apis(parsed)
    kinds = {name.split(".")[0] for name in resources(parsed)}
    for kind in kinds:
        needs = [api for prefix, api in API_OF.items() if kind.startswith(prefix)]
        assert needs, f"which API does {kind} need? add it to API_OF"
        assert set(needs) <= apis, f"{kind} needs {needs}"
    # the image build, keyless domain-wide delegation, data.google_project, Calendar itself
    assert {
        "cloudbuild.googleapis.com", "iamcredentials.googleapis.com", "cloudresourcemanager.googleapis.com",
        "calendar-json.googleapis.com",
    } <= apis  # fmt: skip


def image_pattern(parsed: dict[str, dict[str, Any]], region: str, project: str) -> re.Pattern[str]:
    (validation,) = variables(parsed)["image"]["validation"]
    regex = re.search(r'regex\("(.+?)", var\.image\)', validation["condition"])
    assert regex is not None
    text = regex.group(1).replace("${var.region}", region).replace("${var.project_id}", project)
    return re.compile(text.replace("\\\\", "\\"))


def test_the_image_comes_from_the_repository_terraform_creates(parsed: dict[str, dict[str, Any]]) -> None:
    repository = resources(parsed)["google_artifact_registry_repository.confsync"]
    assert repository["format"] == "DOCKER"
    assert repository["location"] == "${var.region}"
    assert "${google_project_service.apis}" in repository["depends_on"]
    where = "${var.region}-docker.pkg.dev/${var.project_id}"
    own = "${google_artifact_registry_repository.confsync.repository_id}"
    assert locals_(parsed)["image_repository"] == f"{where}/{own}/confsync"
    outputs = {unquote(name): body for block in blocks(parsed, "output") for name, body in block.items()}
    assert outputs["image_repository"]["value"] == "${local.image_repository}"

    pattern = image_pattern(parsed, "europe-west1", "my-project")
    digest = "@sha256:" + "a" * 64
    built = f"europe-west1-docker.pkg.dev/my-project/{repository['repository_id']}/confsync{digest}"
    assert pattern.fullmatch(built)
    assert not pattern.fullmatch(built.replace(digest, ":latest")), "a tag, not a digest"
    assert not pattern.fullmatch(built.replace("my-project", "other-project")), "another project's repository"
    assert not pattern.fullmatch(f"docker.io/library/confsync{digest}")
    image = variables(parsed)["image"]
    assert image["default"] is None, "null for the first, targeted apply that creates the repository"
    assert image["validation"][0]["condition"].startswith("${var.image == null || can(regex(")
    for name in ("google_cloud_run_v2_service.confsync", "google_cloud_run_v2_job.backfill"):
        (lifecycle,) = resources(parsed)[name]["lifecycle"]
        assert [c["condition"] for c in lifecycle["precondition"]] == ["${var.image != null}"]


def test_the_domain_is_mapped_only_once_it_is_verified(parsed: dict[str, dict[str, Any]]) -> None:
    mapping = resources(parsed)["google_cloud_run_domain_mapping.ingest"]
    assert mapping["count"] == "${var.domain_verified ? 1 : 0}"
    assert variables(parsed)["domain_verified"]["default"] is False
    outputs = {unquote(name): body for block in blocks(parsed, "output") for name, body in block.items()}
    assert outputs["dns_records"]["value"].startswith("${var.domain_verified ? ")
    readme = (ROOT / "infra" / "README.md").read_text(encoding="utf-8")
    verify = readme.index("Domain verification")
    assert verify < readme.index("domain_verified = true") < readme.index("terraform output dns_records")


# -- who may touch what, and who hears about it -----------------------------------------------------


def firestore_condition_allows(expression: str, database_id: str, name: str) -> bool:
    """Evaluates the condition's `resource.name == "X"` and `resource.name.startsWith("X")`
    terms, joined by ||, the only forms it may use."""
    allowed = False
    for term in (part.strip() for part in expression.split("||")):
        equal = re.fullmatch(r'resource\.name == "([^"]+)"', term)
        prefix = re.fullmatch(r'resource\.name\.startsWith\("([^"]+)"\)', term)
        match = equal or prefix
        assert match, f"an unexpected term in the Firestore condition: {term}"
        value = match.group(1).replace("${google_firestore_database.confsync.id}", database_id)
        allowed |= name == value if equal else name.startswith(value)
    return allowed


def test_the_firestore_grants_reach_confsyncs_database_and_no_other(parsed: dict[str, dict[str, Any]]) -> None:
    (condition,) = resources(parsed)["google_project_iam_member.firestore"]["condition"]
    expression = condition["expression"]
    ours = "projects/p/databases/confsync"
    assert firestore_condition_allows(expression, ours, ours)
    assert firestore_condition_allows(expression, ours, f"{ours}/documents/calendars/c1")
    assert not firestore_condition_allows(expression, ours, "projects/p/databases/confsync2")
    assert not firestore_condition_allows(expression, ours, "projects/p/databases/confsync2/documents/x")
    assert not firestore_condition_allows(expression, ours, "projects/p/databases/(default)")


def test_pubsubs_own_dead_letters_and_stuck_backlogs_raise_alerts(parsed: dict[str, dict[str, Any]]) -> None:
    found = locals_(parsed)
    metrics = {alert["metric"] for alert in found["pubsub_alerts"].values()}
    assert metrics == {
        "pubsub.googleapis.com/subscription/dead_letter_message_count",
        "pubsub.googleapis.com/subscription/oldest_unacked_message_age",
    }
    ids = '${join(", ", formatlist("\\"%s\\"", sort(keys(local.worker_subscriptions))))}'
    assert found["worker_subscription_ids"] == ids
    policy = resources(parsed)["google_monitoring_alert_policy.pubsub"]
    assert policy["for_each"] == "${local.pubsub_alerts}"
    (condition,) = policy["conditions"][0]["condition_threshold"]
    assert 'metric.type="${each.value.metric}"' in condition["filter"]
    assert 'resource.type="pubsub_subscription"' in condition["filter"]
    assert "resource.label.subscription_id=one_of(${local.worker_subscription_ids})" in condition["filter"]
    backlog = found["pubsub_alerts"]["pubsub_backlog_age"]
    assert backlog["threshold"] == "${var.backlog_alert_s}"
    assert variables(parsed)["backlog_alert_s"]["default"] >= 2 * 60


def test_every_alert_goes_to_a_notification_channel_that_must_be_given(parsed: dict[str, dict[str, Any]]) -> None:
    policies = {name: body for name, body in resources(parsed).items() if name.startswith("google_monitoring_alert")}
    assert set(policies) == {f"google_monitoring_alert_policy.{name}" for name in ("any", "sync_lag", "pubsub")}
    for name, body in policies.items():
        assert body["notification_channels"] == "${var.notification_channels}", name
    channels = variables(parsed)["notification_channels"]
    assert "default" not in channels, "required: an alert nobody receives is no alert"
    conditions = [v["condition"] for v in channels["validation"]]
    assert "${length(var.notification_channels) > 0}" in conditions


def test_the_terraform_files_are_in_terraform_fmt_style() -> None:
    """`terraform fmt` works offline (validate needs the provider from registry.terraform.io,
    which this machine cannot reach); without the binary this test skips and says so."""
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("!!!! TERRAFORM NOT INSTALLED: `terraform fmt -check` did NOT run on infra/terraform !!!!")
    done = subprocess.run(
        [binary, "fmt", "-check", "-no-color", str(TERRAFORM)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, f"not in terraform fmt style (run `terraform fmt infra/terraform`):\n{done.stdout}"


CLOUD_RUN_SIGTERM_GRACE_S = 10  # Cloud Run sends SIGKILL this long after SIGTERM


def test_the_services_drain_within_cloud_runs_sigterm_grace() -> None:
    """The drain deadline covers the HTTP server and every worker together (stack/services.py);
    past the grace Cloud Run kills the instance mid-message."""
    text = (ROOT / "infra" / "terraform" / "run.tf").read_text()
    set_here = re.findall(r'CONFSYNC_SHUTDOWN_DEADLINE_S\s*=\s*"?([0-9.]+)', text)
    deadlines = [float(value) for value in set_here] or [Settings().shutdown_deadline_s]
    assert max(deadlines) < CLOUD_RUN_SIGTERM_GRACE_S
