# One service account per role, each with only what its role does (the secrets each reads:
# run.tf's roles, and secrets.tf grants exactly those):
#   ingest    webhook, add-on API, connect pages, channel renewal, lag repair: Firestore, publish, Calendar
#   processor sync and classify: Firestore, publish commands, Calendar
#   publisher apply commands: Firestore
#   backfill  the daily reconciliation job: Firestore, publish resync requests, Calendar (dry runs)
#   push      the identity Pub/Sub pushes as (invokes processor and publisher)
#   scheduler the identity Cloud Scheduler calls as (ingest's /tasks routes, the backfill job)
resource "google_service_account" "confsync" {
  for_each     = toset(["ingest", "processor", "publisher", "backfill", "push", "scheduler"])
  account_id   = "confsync-${each.value}"
  display_name = "confsync ${each.value}"
  depends_on   = [google_project_service.apis]
}

# Firestore grants are project-wide; the condition narrows them to confsync's database: its
# exact name, or below it ("/" ends the prefix, so database "confsync2" does not match).
resource "google_project_iam_member" "firestore" {
  for_each = toset(["ingest", "processor", "publisher", "backfill"])
  project  = var.project_id
  role     = "roles/datastore.user"
  member   = google_service_account.confsync[each.value].member
  condition {
    title      = "confsync database only"
    expression = "resource.name == \"${google_firestore_database.confsync.id}\" || resource.name.startsWith(\"${google_firestore_database.confsync.id}/\")"
  }
}

# Structured logs from every identity that runs confsync code.
resource "google_project_iam_member" "log_writer" {
  for_each = toset(["ingest", "processor", "publisher", "backfill"])
  project  = var.project_id
  role     = "roles/logging.logWriter"
  member   = google_service_account.confsync[each.value].member
}

# Spans from the services (the backfill job records none), written to Cloud Trace's OTLP endpoint
# (the Telemetry API), when tracing is on.
resource "google_project_iam_member" "trace_writer" {
  for_each = var.tracing == "gcp" ? toset(["ingest", "processor", "publisher"]) : toset([])
  project  = var.project_id
  role     = "roles/telemetry.tracesWriter"
  member   = google_service_account.confsync[each.value].member
}

# Pub/Sub (push) may call the private processor and publisher, and nobody else.
resource "google_cloud_run_v2_service_iam_member" "push_invokes" {
  for_each = toset(["processor", "publisher"])
  location = var.region
  name     = google_cloud_run_v2_service.confsync[each.value].name
  role     = "roles/run.invoker"
  member   = google_service_account.confsync["push"].member
}

# Cloud Scheduler starts the backfill job as the scheduler account.
resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_backfill" {
  location = var.region
  name     = google_cloud_run_v2_job.backfill.name
  role     = "roles/run.invoker"
  member   = google_service_account.confsync["scheduler"].member
}
