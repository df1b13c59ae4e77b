"""infra/terraform's Cloud Run services, Scheduler jobs and monitoring, checked without a cloud:
what the services are told (settings, routes, commands, log lines, indexes) exists in the code,
timeouts match their callers' deadlines, and every alert reaches a notification channel. The
log-based metrics and their runbook are checked in test_terraform_monitoring.py."""

from __future__ import annotations

import re

from tests_support.cli import run_confsync
from tests_support.terraform import ROOT, Parsed, blocks, locals_, resources, tf_files, variables

from confsync.settings import Settings
from confsync.store.firestore import COMPOSITE_INDEXES

# -- what the services are told exists in the code -------------------------------------------


def service_env_names(parsed: Parsed) -> set[str]:
    """Every CONFSYNC_ name the configuration sets, as keys or as values of the secret maps."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in tf_files())
    return set(re.findall(r"\bCONFSYNC_[A-Z0-9_]+\b", text))


def test_every_setting_the_services_get_is_one_confsync_reads(parsed: Parsed) -> None:
    known = {info.env for info in Settings().describe()}
    given = service_env_names(parsed)
    assert len(given) >= 20
    assert given <= known, f"not confsync settings: {sorted(given - known)}"


def test_the_services_run_commands_the_cli_has(parsed: Parsed) -> None:
    roles = locals_(parsed)["roles"]
    commands = [role["args"] for role in roles.values()]
    (job,) = resources(parsed)["google_cloud_run_v2_job.backfill"]["template"]
    commands.append(job["template"][0]["containers"][0]["args"])
    assert len(commands) == 4
    for args in commands:
        done = run_confsync(*args, "--help")
        assert done.returncode == 0, f"confsync {' '.join(args)}: {done.stderr}"


def test_the_scheduler_calls_routes_the_ingest_service_serves(parsed: Parsed) -> None:
    source = (ROOT / "ingest" / "app.py").read_text(encoding="utf-8")
    served = set(re.findall(r'Route\("(/tasks/[^"]+)", [\w()]+, methods=\["POST"\]\)', source))
    tasks = locals_(parsed)["ingest_tasks"]
    paths = {task["path"].split("?")[0] for task in tasks.values()}
    assert paths == {"/tasks/renew-channels", "/tasks/reconcile-channels", "/tasks/repair-lag"}
    assert paths <= served


def test_the_firestore_indexes_are_the_ones_the_store_queries_need(parsed: Parsed) -> None:
    declared = {
        (body["collection"], tuple(field["field_path"] for field in body["fields"]))
        for name, body in resources(parsed).items()
        if name.startswith("google_firestore_index.")
    }
    assert declared == COMPOSITE_INDEXES


# -- under load: timeouts, deadlines, retries ----------------------------------------------------


def test_the_workers_request_timeout_is_their_subscriptions_ack_deadline(parsed: Parsed) -> None:
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
    # ingest fans channel passes out to itself; a page or one calendar is far within its timeout
    key = "${(var.pubsub.topics.channel_work)}"
    assert found["push_service_uri"][key] == '${google_cloud_run_v2_service.confsync["ingest"].uri}'


def test_ingest_runs_a_scheduled_task_as_long_as_the_scheduler_waits(parsed: Parsed) -> None:
    found = locals_(parsed)
    assert found["roles"]["ingest"]["timeout"] == "${local.ingest_timeout_s}s"
    assert found["ingest_timeout_s"] == "${max([for task in values(local.ingest_tasks) : task.deadline_s] ...)}"
    deadlines = [task["deadline_s"] for task in found["ingest_tasks"].values()]
    assert max(deadlines) <= 1800, "Cloud Scheduler's longest attempt deadline for HTTP targets"
    job = resources(parsed)["google_cloud_scheduler_job.ingest_task"]
    assert job["attempt_deadline"] == "${each.value.deadline_s}s"


CLOUD_RUN_SIGTERM_GRACE_S = 10  # Cloud Run sends SIGKILL this long after SIGTERM


def test_the_services_drain_within_cloud_runs_sigterm_grace() -> None:
    """The drain deadline covers the HTTP server and every worker together (stack/services.py);
    past the grace Cloud Run kills the instance mid-message."""
    text = (ROOT / "infra" / "terraform" / "run.tf").read_text()
    set_here = re.findall(r'CONFSYNC_SHUTDOWN_DEADLINE_S\s*=\s*"?([0-9.]+)', text)
    deadlines = [float(value) for value in set_here] or [Settings().shutdown_deadline_s]
    assert max(deadlines) < CLOUD_RUN_SIGTERM_GRACE_S


# -- who hears about it ---------------------------------------------------------------------------


def test_pubsubs_own_dead_letters_and_stuck_backlogs_raise_alerts(parsed: Parsed) -> None:
    found = locals_(parsed)
    metrics = {alert["metric"] for alert in found["pubsub_alerts"].values()}
    assert metrics == {
        "pubsub.googleapis.com/subscription/dead_letter_message_count",
        "pubsub.googleapis.com/subscription/oldest_unacked_message_age",
    }
    ids = '${join(", ", formatlist("\\"%s\\"", sort(keys(local.worker_subscriptions))))}'
    assert found["worker_subscription_ids"] == ids
    # one alert policy per alert (local.alerts); a Pub/Sub one filters on the worker subscriptions
    policy = resources(parsed)["google_monitoring_alert_policy.any"]
    assert policy["for_each"] == "${local.alerts}"
    (condition,) = policy["conditions"][0]["condition_threshold"]
    assert condition["filter"] == 'metric.type="${each.value.metric}" AND ${each.value.on}'
    on_pubsub = found["alerts"].split("local.pubsub_alerts", 1)[1].replace('\\"', '"')
    assert 'resource.type="pubsub_subscription"' in on_pubsub
    assert "resource.label.subscription_id=one_of(${local.worker_subscription_ids})" in on_pubsub
    backlog = found["pubsub_alerts"]["pubsub_backlog_age"]
    assert backlog["threshold"] == "${var.backlog_alert_s}"
    assert variables(parsed)["backlog_alert_s"]["default"] >= 2 * 60


def test_every_alert_goes_to_a_notification_channel_that_must_be_given(parsed: Parsed) -> None:
    policies = {name: body for name, body in resources(parsed).items() if name.startswith("google_monitoring_alert")}
    assert set(policies) == {"google_monitoring_alert_policy.any"}
    # ... whose alerts are the log-based counts, the sync lag and Pub/Sub's own
    found = locals_(parsed)
    assert found["alerts"].startswith("${merge({for name, alert in local.service_alerts : name => ")
    assert "{for name, alert in local.pubsub_alerts : name => " in found["alerts"]
    assert found["service_alerts"].startswith("${merge({for name, alert in local.log_alerts : name => ")
    assert "{sync_lag = {" in found["service_alerts"]
    # and the policies that were resources of their own moved into it, not replaced
    moved = {block["from"]: block["to"] for block in blocks(parsed, "moved")}
    assert moved == {
        "${google_monitoring_alert_policy.sync_lag}": '${google_monitoring_alert_policy.any["sync_lag"]}',
        **{
            f'${{google_monitoring_alert_policy.pubsub["{key}"]}}': f'${{google_monitoring_alert_policy.any["{key}"]}}'
            for key in found["pubsub_alerts"]
        },
    }
    for name, body in policies.items():
        assert body["notification_channels"] == "${var.notification_channels}", name
    channels = variables(parsed)["notification_channels"]
    assert "default" not in channels, "required: an alert nobody receives is no alert"
    conditions = [v["condition"] for v in channels["validation"]]
    assert "${length(var.notification_channels) > 0}" in conditions
