"""infra/terraform as a whole, checked without a cloud: every file parses (python-hcl2), every
reference resolves, every variable is described and the free-form ones validated, and what the
first apply needs (the APIs, the image's repository, the domain) is declared; `terraform fmt`
style where the binary is installed. The Pub/Sub and IAM checks are in
test_terraform_pubsub_iam.py, the Cloud Run, Scheduler and monitoring ones in
test_terraform_run_monitoring.py, checkov's own run in test_checkov.py."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from tests_support.terraform import (
    REFERENCE,
    ROOT,
    TERRAFORM,
    Parsed,
    code_of,
    locals_,
    outputs,
    references,
    resources,
    tf_files,
    variables,
)

# -- the files ----------------------------------------------------------------------------------


def test_every_terraform_file_parses_and_the_configuration_is_complete(parsed: Parsed) -> None:
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
        "google_firestore_index.held_commands",
        "google_firestore_field.connect_flows_ttl",
        "google_secret_manager_secret.confsync",
        "google_logging_metric.count",
        "google_logging_metric.sync_lag",
        "google_monitoring_alert_policy.any",
    ):
        assert needed in declared, f"{needed} is not declared"
    assert {"webhook_url", "addon_api_url", "oauth_redirect_uris"} <= set(outputs(parsed))


def test_every_reference_resolves_to_a_declaration(parsed: Parsed) -> None:
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


def test_the_reference_check_catches_a_misspelt_reference(parsed: Parsed) -> None:
    broken = {"x.tf": {"resource": [{"google_pubsub_topic": {"t": {"name": "${var.pubsub.topics.x}"}}}]}}
    broken["y.tf"] = {"output": [{"o": {"value": "${google_pubsub_topc.confsync.id} ${local.nope}"}}]}
    # a moved block's `from` is a former address on purpose; its `to` must resolve
    broken["z.tf"] = {"moved": [{"from": "${google_pubsub_topic.gone}", "to": "${google_pubsub_topic.typo}"}]}
    found = {reference for _, reference, _ in references(broken)}
    assert found == {"var.pubsub.topics.x", "google_pubsub_topc.confsync.id", "local.nope", "google_pubsub_topic.typo"}
    literal = code_of('${toset(["roles/run.invoker", "a.b"])} and ${"x-${var.region}.y"}')
    assert [m.group(0) for m in REFERENCE.finditer(literal)] == ["var.region"]


def test_every_variable_has_a_description_and_the_free_form_ones_are_validated(
    parsed: Parsed,
) -> None:
    declared = variables(parsed)
    assert all(body.get("description") for body in declared.values()), "a variable without a description"
    for name in (
        "project_id", "region", "image", "public_domain", "addon_oauth_client_id", "provider_url", "pubsub",
        "notification_channels", "backlog_alert_s", "oauth_client_id", "vendor_client_id", "vault_key_version",
        "delegated_domains", "allowed_domains", "addon_rate_per_min",
    ):  # fmt: skip
        assert declared[name].get("validation"), f"variable {name} is not validated"


def test_the_pinned_provider_knows_every_argument_used(parsed: Parsed) -> None:
    """google provider 6.8.0 added invoker_iam_disabled to google_cloud_run_v2_service, 6.43.0
    deletion_protection to google_secret_manager_secret."""
    (terraform,) = parsed["versions.tf"]["terraform"]
    google = terraform["required_providers"][0]["google"]
    lowest = re.search(r">=\s*([0-9.]+)", google["version"])
    assert lowest is not None
    assert tuple(int(part) for part in lowest.group(1).split(".")) >= (6, 43)
    assert "deletion_protection" in resources(parsed)["google_secret_manager_secret.confsync"]


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


def enabled_apis(parsed: Parsed) -> set[str]:
    for_each = resources(parsed)["google_project_service.apis"]["for_each"]
    return set(re.findall(r'"([a-z0-9-]+\.googleapis\.com)"', for_each))


def test_every_api_the_resources_and_the_deploy_steps_need_is_enabled(parsed: Parsed) -> None:
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


def image_pattern(parsed: Parsed, region: str, project: str) -> re.Pattern[str]:
    (validation,) = variables(parsed)["image"]["validation"]
    regex = re.search(r'regex\("(.+?)", var\.image\)', validation["condition"])
    assert regex is not None
    text = regex.group(1).replace("${var.region}", region).replace("${var.project_id}", project)
    return re.compile(text.replace("\\\\", "\\"))


def test_the_image_comes_from_the_repository_terraform_creates(parsed: Parsed) -> None:
    repository = resources(parsed)["google_artifact_registry_repository.confsync"]
    assert repository["format"] == "DOCKER"
    assert repository["location"] == "${var.region}"
    assert "${google_project_service.apis}" in repository["depends_on"]
    where = "${var.region}-docker.pkg.dev/${var.project_id}"
    own = "${google_artifact_registry_repository.confsync.repository_id}"
    assert locals_(parsed)["image_repository"] == f"{where}/{own}/confsync"
    assert outputs(parsed)["image_repository"]["value"] == "${local.image_repository}"

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


def test_the_domain_is_mapped_only_once_it_is_verified(parsed: Parsed) -> None:
    mapping = resources(parsed)["google_cloud_run_domain_mapping.ingest"]
    assert mapping["count"] == "${var.domain_verified ? 1 : 0}"
    assert variables(parsed)["domain_verified"]["default"] is False
    assert outputs(parsed)["dns_records"]["value"].startswith("${var.domain_verified ? ")
    readme = (ROOT / "infra" / "README.md").read_text(encoding="utf-8")
    verify = readme.index("Domain verification")
    assert verify < readme.index("domain_verified = true") < readme.index("terraform output dns_records")


# -- style ----------------------------------------------------------------------------------------


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
