"""infra/terraform's Pub/Sub and IAM, checked without a cloud: the Pub/Sub names and policies
are the ones `confsync pubsub bootstrap` creates (on the emulator too), an overload is retried
for hours before anything is dead-lettered, and who may touch what (Firestore, the services,
Cloud Trace)."""

from __future__ import annotations

import json
import re
import typing
import uuid

from google.api_core.retry import Retry
from google.cloud import pubsub_v1
from tests_support.cli import confsync_env, run_confsync
from tests_support.terraform import Parsed, locals_, resources, unquote, variables

from confsync.settings import Settings, TracingKind
from confsync.tracing import GCP_OTLP_ENDPOINT
from confsync.transport.pubsub import bootstrap
from confsync.transport.topology import terraform_vars, topology

# -- one source of truth for Pub/Sub ------------------------------------------------------------


def test_the_pubsub_variable_is_what_bootstrap_prints(parsed: Parsed) -> None:
    default = variables(parsed)["pubsub"]["default"]
    expected = terraform_vars(Settings())["pubsub"]
    assert default == expected

    env = confsync_env()
    env.pop("PUBSUB_EMULATOR_HOST", None)
    printed = run_confsync("pubsub", "bootstrap", "--print-terraform-vars", env=env)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == {"pubsub": default}


def test_changed_settings_print_changed_terraform_vars() -> None:
    env = confsync_env(CONFSYNC_TOPIC_CONFERENCE_COMMANDS="meetings", CONFSYNC_PUBSUB_MAX_DELIVERY_ATTEMPTS="9")
    printed = run_confsync("pubsub", "bootstrap", "--print-terraform-vars", env=env)
    assert printed.returncode == 0, printed.stderr
    pubsub = json.loads(printed.stdout)["pubsub"]
    assert pubsub["topics"]["conference_commands"] == "meetings"
    assert pubsub["subscriptions"]["conference-commands-publisher"]["topic"] == "meetings"
    assert pubsub["subscriptions"]["conference-commands-publisher"]["max_delivery_attempts"] == 9


def test_the_subscriptions_take_every_setting_from_the_variable(parsed: Parsed) -> None:
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


def test_bootstrap_creates_on_the_emulator_what_terraform_declares(pubsub_emulator_host: str, parsed: Parsed) -> None:
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


def test_an_overload_has_hours_of_retries_before_anything_is_dead_lettered(parsed: Parsed) -> None:
    pubsub = variables(parsed)["pubsub"]["default"]
    workers = [s for s in pubsub["subscriptions"].values() if s["dead_letter_topic"] is not None]
    assert len(workers) == 3  # calendar changes, conference commands, channel work
    for sub in workers:
        assert sub["max_delivery_attempts"] >= 20
        assert sub["max_backoff_seconds"] == 600  # Pub/Sub's longest
        waited = sum(min(sub["min_backoff_seconds"] * 2**n, sub["max_backoff_seconds"]) for n in range(19))
        assert waited > 3600


# -- who may touch what ---------------------------------------------------------------------------


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


def test_the_firestore_grants_reach_confsyncs_database_and_no_other(parsed: Parsed) -> None:
    (condition,) = resources(parsed)["google_project_iam_member.firestore"]["condition"]
    expression = condition["expression"]
    ours = "projects/p/databases/confsync"
    assert firestore_condition_allows(expression, ours, ours)
    assert firestore_condition_allows(expression, ours, f"{ours}/documents/calendars/c1")
    assert not firestore_condition_allows(expression, ours, "projects/p/databases/confsync2")
    assert not firestore_condition_allows(expression, ours, "projects/p/databases/confsync2/documents/x")
    assert not firestore_condition_allows(expression, ours, "projects/p/databases/(default)")


def test_only_ingest_is_public_and_only_pubsub_invokes_the_workers(parsed: Parsed) -> None:
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


def test_with_gcp_tracing_the_services_may_write_spans_where_cloud_trace_takes_them(parsed: Parsed) -> None:
    declared = variables(parsed)["tracing"]
    (validation,) = declared["validation"]
    allowed = set(re.findall(r'"([a-z]+)"', validation["condition"]))
    assert allowed == {"gcp", "off"}, "otlp needs a collector Terraform does not deploy"
    assert allowed <= set(typing.get_args(TracingKind))
    assert declared["default"] == "gcp"
    assert locals_(parsed)["common_env"]["CONFSYNC_TRACING"] == "${var.tracing}"
    grant = resources(parsed)["google_project_iam_member.trace_writer"]
    assert grant["role"] == "roles/telemetry.tracesWriter"
    assert grant["for_each"] == '${var.tracing == "gcp" ? toset(["ingest", "processor", "publisher"]) : toset([])}'
    apis = set(
        re.findall(r'"([a-z0-9-]+\.googleapis\.com)"', resources(parsed)["google_project_service.apis"]["for_each"])
    )
    assert {"telemetry.googleapis.com", "cloudtrace.googleapis.com"} <= apis
    assert GCP_OTLP_ENDPOINT.startswith("https://telemetry.googleapis.com/")
