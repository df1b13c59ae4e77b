# Log-based metrics over confsync's structured logs (JSON lines: jsonPayload.message is the
# event; confsync/logs.py), and the alerts on them and on Pub/Sub's own metrics. tests/test_infra
# checks that every message matched here is one the code logs.

locals {
  confsync_services = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"^confsync-\""

  # Counters over the summary lines the services write, one metric per question, split by labels
  # (each metric also by service). A filter matches messages the code logs word for word; each
  # label is a field of those lines (tests/test_infra checks both).
  log_metrics = {
    notifications = {
      about  = "Calendar notifications the webhook answered: published to Pub/Sub, or refused and why."
      filter = "jsonPayload.message=\"notification\""
      labels = {
        outcome = { extract = "EXTRACT(jsonPayload.outcome)", about = "published, or the refusal: bad_request, bad_token, bad_resource, unknown_channel, publish_failed." }
        status  = { extract = "EXTRACT(jsonPayload.status)", about = "The HTTP status Calendar was answered." }
      }
    }
    listings = {
      about  = "Completed events.list passes of a calendar (each one or more pages), by why it was listed and whether it was a full listing."
      filter = "jsonPayload.message=\"calendar synced\""
      labels = {
        source    = { extract = "EXTRACT(jsonPayload.source)", about = "push, poll, repair, backfill, renewal or manual." }
        full_sync = { extract = "EXTRACT(jsonPayload.full_sync)", about = "true for a full listing (no sync token, or Calendar answered 410)." }
      }
    }
    commands = {
      about = "Conference commands the publisher settled (applied, stale, duplicate, superseded, already_gone, held, seen_again, expired) or failed (nack: retried; dead_letter)."
      # the settled line is "command applied" or "command <outcome>" (publishers/apply.py)
      filter = "jsonPayload.message=~\"^command (applied|stale|duplicate|superseded|already_gone|held|seen_again|expired)$\" OR (resource.labels.service_name=\"confsync-publisher\" AND jsonPayload.message=(\"message will be retried\" OR \"message dead-lettered\" OR \"handler failed unexpectedly; will retry\"))"
      labels = {
        outcome = { extract = "EXTRACT(jsonPayload.outcome)", about = "How the command settled, or nack / dead_letter." }
        kind    = { extract = "EXTRACT(jsonPayload.kind)", about = "create, update or delete (empty for a failure)." }
      }
    }
    provider_errors = {
      about  = "Calls to the conferencing API answered with an error status, timed out or could not connect."
      filter = "jsonPayload.message=\"conferencing API call failed\""
      labels = {
        status = { extract = "EXTRACT(jsonPayload.status)", about = "The HTTP status, or timeout / unreachable." }
        method = { extract = "EXTRACT(jsonPayload.method)", about = "The HTTP method (POST creates, PATCH updates, DELETE deletes)." }
      }
    }
    breaker_openings = {
      about  = "Times a publisher instance opened its circuit to the conferencing API after consecutive failures."
      filter = "jsonPayload.message=\"circuit opened\""
      labels = {}
    }
    dead_letters = {
      about  = "Messages confsync moved to a dead-letter topic (a permanent failure: see `confsync deadletter list`)."
      filter = "jsonPayload.message=(\"message dead-lettered\" OR \"command dead-lettered after its last republish\")"
      labels = {
        error = { extract = "REGEXP_EXTRACT(jsonPayload.error, \"^([A-Za-z_]+):\")", about = "The error's type (empty for a command the lag repair gave up republishing)." }
      }
    }
    channel_renewal_failures = {
      about  = "Watch channels that could not be renewed (retried next run) or whose calendar can no longer be watched."
      filter = "jsonPayload.message=(\"channel renewal failed; will retry\" OR \"calendar can no longer be watched\")"
      labels = {}
    }
    disconnected_calendars = {
      about  = "Calendars marked disconnected: Calendar refused their watch or listing (404/403, or the credentials were refused). Nothing is deleted; the owner must reconnect."
      filter = "jsonPayload.message=(\"calendar can no longer be watched\" OR \"calendar can no longer be read; disconnected, nothing deleted\")"
      labels = {
        message = { extract = "EXTRACT(jsonPayload.message)", about = "Which step found it: the watch or the listing." }
      }
    }
    failed_calendars = {
      about  = "Calendars marked failed: a listing answered a permanent error. Not synced until `confsync backfill --calendar` succeeds for it."
      filter = "jsonPayload.message=\"calendar failed permanently; not synced until `confsync backfill --calendar` succeeds for it\""
      labels = {
        status = { extract = "EXTRACT(jsonPayload.status)", about = "Calendar's HTTP status." }
      }
    }
    failed_watches = {
      about  = "A first watch of a calendar that failed (the add-on's create, or a reconnect); the next renewal pass tries again."
      filter = "jsonPayload.message=(\"could not watch the calendar; changes will not sync until it can\" OR \"could not watch a reconnected calendar yet\")"
      labels = {
        message = { extract = "EXTRACT(jsonPayload.message)", about = "Which path watched: the add-on's create or a reconnect." }
      }
    }
    failed_creates = {
      about  = "Conferences the add-on asked for that the conferencing API did not create: the user saw an error."
      filter = "jsonPayload.message=(\"conference creation failed, temporarily\" OR \"conference creation failed\")"
      labels = {
        message = { extract = "EXTRACT(jsonPayload.message)", about = "\"temporarily\" (503 to the add-on: try again) or permanent (502)." }
        status  = { extract = "EXTRACT(jsonPayload.status)", about = "The conferencing API's HTTP status (empty for a timeout)." }
      }
    }
  }

  # The counts a person must act on, each a threshold on one metric over 5 min (`where` narrows
  # it by label). A runbook line per alert is in infra/README.md, "Alerts" (tests/test_infra).
  log_alerts = {
    dead_letters = {
      metric = "dead_letters"
      where  = ""
      above  = 0
      about  = "Messages were dead-lettered: a command or a calendar change failed permanently."
    }
    channel_renewal_failures = {
      metric = "channel_renewal_failures"
      where  = ""
      above  = 0
      about  = "Watch channels could not be renewed, or a calendar can no longer be watched."
    }
    breaker_openings = {
      metric = "breaker_openings"
      where  = ""
      above  = 0
      about  = "The publisher stopped calling the conferencing API after consecutive failures: commands wait."
    }
    failed_calendars = {
      metric = "failed_calendars"
      where  = ""
      above  = 0
      about  = "A calendar answered a permanent error to its listing and is no longer synced."
    }
    # One user leaving is routine; many at once is a revoked delegation or a broken OAuth client.
    mass_disconnection = {
      metric = "disconnected_calendars"
      where  = ""
      above  = 10
      about  = "More than 10 calendars were disconnected in 5 min."
    }
    unpublished_notifications = {
      metric = "notifications"
      where  = "metric.label.outcome=\"publish_failed\""
      above  = 0
      about  = "The webhook could not publish Calendar's notifications to Pub/Sub and answered 503."
    }
    refused_creates = {
      metric = "failed_creates"
      where  = "metric.label.message=\"conference creation failed\""
      above  = 0
      about  = "The conferencing API refused to create a conference the add-on asked for (permanent): the user saw an error."
    }
  }
}

resource "google_logging_metric" "count" {
  for_each    = local.log_metrics
  name        = "confsync/${each.key}"
  description = each.value.about
  filter      = "${local.confsync_services} AND (${each.value.filter})"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "service"
      value_type  = "STRING"
      description = "The Cloud Run service that logged it."
    }
    dynamic "labels" {
      for_each = each.value.labels
      content {
        key         = labels.key
        value_type  = "STRING"
        description = labels.value.about
      }
    }
  }
  label_extractors = merge(
    { service = "EXTRACT(resource.labels.service_name)" },
    { for key, label in each.value.labels : key => label.extract },
  )
}

# Each lag repair that finds lagging calendars logs how far behind the oldest one is.
resource "google_logging_metric" "sync_lag" {
  name            = "confsync/sync_lag_seconds"
  description     = "Seconds the oldest lagging calendar was behind its notifications, per lag repair that found one."
  filter          = "${local.confsync_services} AND jsonPayload.message=\"lag repaired\""
  value_extractor = "EXTRACT(jsonPayload.oldest_lag_s)"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "s"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 16
      growth_factor      = 2
      scale              = 30
    }
  }
}

# Pub/Sub's own view of the worker subscriptions, which no confsync log line gives: a message
# Pub/Sub dead-letters itself once max_delivery_attempts pushes failed (a handler that timed out
# or a service that was down logs nothing), and a backlog whose oldest message stops moving.
locals {
  worker_subscription_ids = join(", ", formatlist("\"%s\"", sort(keys(local.worker_subscriptions))))
  pubsub_alerts = {
    pubsub_dead_letters = {
      about     = "Pub/Sub moved messages to a dead-letter topic after max_delivery_attempts failed deliveries."
      metric    = "pubsub.googleapis.com/subscription/dead_letter_message_count"
      condition = "dead-lettered by Pub/Sub > 0 in 5 min"
      aligner   = "ALIGN_SUM"
      reducer   = "REDUCE_SUM"
      period    = "300s"
      threshold = 0
      duration  = "0s"
    }
    pubsub_backlog_age = {
      about     = "A worker subscription's oldest unacknowledged message has been waiting more than ${var.backlog_alert_s} s: its stage is down, failing every delivery, or short of capacity."
      metric    = "pubsub.googleapis.com/subscription/oldest_unacked_message_age"
      condition = "oldest unacked message > ${var.backlog_alert_s} s for 5 min"
      aligner   = "ALIGN_MAX"
      reducer   = "REDUCE_MAX"
      period    = "60s"
      threshold = var.backlog_alert_s
      duration  = "300s"
    }
  }

  # Every alert is one threshold on one metric: a log-based count in 5 min (local.log_alerts),
  # the sync lag's p99 over 5 min (on the services' logs), and the Pub/Sub alerts above (per
  # worker subscription). Its display name is "confsync: " and its key with spaces.
  service_alerts = merge(
    {
      for name, alert in local.log_alerts : name => {
        about     = alert.about
        metric    = "logging.googleapis.com/user/${google_logging_metric.count[alert.metric].name}"
        where     = alert.where
        condition = "${replace(name, "_", " ")} > ${alert.above} in 5 min"
        aligner   = "ALIGN_SUM"
        reducer   = "REDUCE_SUM"
        period    = "300s"
        threshold = alert.above
        duration  = "0s"
      }
    },
    {
      sync_lag = {
        about     = "Calendars fall behind their notifications by more than ${var.sync_lag_alert_s} s: processors are short of capacity, Calendar is refusing listings, or messages are stuck."
        metric    = "logging.googleapis.com/user/${google_logging_metric.sync_lag.name}"
        where     = ""
        condition = "oldest lag p99 > ${var.sync_lag_alert_s} s over 5 min"
        aligner   = "ALIGN_PERCENTILE_99"
        reducer   = "REDUCE_MAX"
        period    = "300s"
        threshold = var.sync_lag_alert_s
        duration  = "0s"
      }
    },
  )
  alerts = merge(
    {
      for name, alert in local.service_alerts : name => merge(alert, {
        on       = join(" AND ", compact(["resource.type=\"cloud_run_revision\"", alert.where]))
        group_by = null
      })
    },
    {
      for name, alert in local.pubsub_alerts : name => merge(alert, {
        on       = "resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=one_of(${local.worker_subscription_ids})"
        group_by = ["resource.label.subscription_id"]
      })
    },
  )
}

resource "google_monitoring_alert_policy" "any" {
  for_each              = local.alerts
  display_name          = "confsync: ${replace(each.key, "_", " ")}"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels
  documentation {
    mime_type = "text/markdown"
    content   = "${each.value.about} Runbook: infra/README.md, \"Alerts\"."
  }
  conditions {
    display_name = each.value.condition
    condition_threshold {
      filter          = "metric.type=\"${each.value.metric}\" AND ${each.value.on}"
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = each.value.duration
      aggregations {
        alignment_period     = each.value.period
        per_series_aligner   = each.value.aligner
        cross_series_reducer = each.value.reducer
        group_by_fields      = each.value.group_by
      }
    }
  }
}

# The sync-lag and Pub/Sub alerts were resources of their own; their objects keep their place.
moved {
  from = google_monitoring_alert_policy.sync_lag
  to   = google_monitoring_alert_policy.any["sync_lag"]
}

moved {
  from = google_monitoring_alert_policy.pubsub["pubsub_dead_letters"]
  to   = google_monitoring_alert_policy.any["pubsub_dead_letters"]
}

moved {
  from = google_monitoring_alert_policy.pubsub["pubsub_backlog_age"]
  to   = google_monitoring_alert_policy.any["pubsub_backlog_age"]
}
