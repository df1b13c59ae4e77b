# Cloud Scheduler: the periodic work of a service that only runs while it has requests.
# The ingest routes check the scheduler's OIDC token themselves (audience var.push_audience,
# email of the scheduler account; ingest/app.py). A channel tick publishes one page of due
# calendars to the channel-work topic and returns; ingest's push subscription does the rest,
# a page and a calendar per request (ingest/channels.py).

locals {
  ingest_uri = google_cloud_run_v2_service.confsync["ingest"].uri
  # Ingest's request timeout (run.tf): the longest task runs to its deadline, not Cloud Run's.
  ingest_timeout_s = max([for task in values(local.ingest_tasks) : task.deadline_s]...)
  ingest_tasks = {
    renew-channels = {
      about      = "Fan out the renewal of Calendar watch channels expiring within the window: new channel first, then stop the old one."
      schedule   = var.channel_renewal_schedule
      path       = "/tasks/renew-channels?before=${var.renewal_window_s}"
      deadline_s = 120
    }
    reconcile-channels = {
      about      = "Fan out a sweep of every active calendar: one with links and no live channel is watched."
      schedule   = var.channel_sweep_schedule
      path       = "/tasks/reconcile-channels"
      deadline_s = 120
    }
    repair-lag = {
      about      = "Re-announce calendars whose notification was lost and republish unsettled commands (ingest/lag.py)."
      schedule   = var.lag_repair_schedule
      path       = "/tasks/repair-lag"
      deadline_s = 120
    }
  }
}

resource "google_cloud_scheduler_job" "ingest_task" {
  for_each         = local.ingest_tasks
  name             = "confsync-${each.key}"
  description      = each.value.about
  region           = var.region
  schedule         = each.value.schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "${each.value.deadline_s}s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "10s"
    max_backoff_duration = "300s"
  }

  http_target {
    http_method = "POST"
    uri         = "${local.ingest_uri}${each.value.path}"
    oidc_token {
      service_account_email = google_service_account.confsync["scheduler"].email
      audience              = var.push_audience
    }
  }

  depends_on = [google_project_service.apis]
}

# The daily reconciliation starts the backfill job through the Cloud Run Admin API. Google
# APIs take OAuth access tokens, not OIDC ID tokens, hence oauth_token here (still the
# scheduler's own service account; it may run this one job and nothing else: iam.tf).
resource "google_cloud_scheduler_job" "backfill" {
  name             = "confsync-backfill"
  description      = "Daily full resync of every active calendar (confsync backfill --all), reconciling conferences with Calendar."
  region           = var.region
  schedule         = var.backfill_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "60s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "60s"
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/${google_cloud_run_v2_job.backfill.id}:run"
    oauth_token {
      service_account_email = google_service_account.confsync["scheduler"].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_project_service.apis]
}
