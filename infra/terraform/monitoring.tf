# Log-based metrics over confsync's structured logs (JSON lines: jsonPayload.message is the
# event; confsync/logs.py), and the alerts on them and on Pub/Sub's own metrics. tests/test_infra
# checks that every message matched here is one the code logs.

locals {
  confsync_services = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"^confsync-\""
  log_metrics = {
    dead_letters = {
      about  = "Messages confsync moved to a dead-letter topic (a permanent failure: see `confsync deadletter list`)."
      filter = "jsonPayload.message=\"message dead-lettered\""
    }
    channel_renewal_failures = {
      about  = "Watch channels that could not be renewed (retried next run) or whose calendar can no longer be watched."
      filter = "jsonPayload.message=(\"channel renewal failed; will retry\" OR \"calendar can no longer be watched\")"
    }
  }
}

resource "google_logging_metric" "count" {
  for_each    = local.log_metrics
  name        = "confsync/${each.key}"
  description = each.value.about
  filter      = "${local.confsync_services} AND ${each.value.filter}"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "service"
      value_type  = "STRING"
      description = "The Cloud Run service that logged it."
    }
  }
  label_extractors = {
    service = "EXTRACT(resource.labels.service_name)"
  }
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

  # Every alert is one threshold on one metric: any of a log-based count in 5 min, the sync
  # lag's p99 over 5 min (on the services' logs), and the Pub/Sub alerts above (per worker
  # subscription). Its display name is "confsync: " and its key with spaces.
  service_alerts = merge(
    {
      for name, metric in local.log_metrics : name => {
        about     = metric.about
        metric    = "logging.googleapis.com/user/${google_logging_metric.count[name].name}"
        condition = "${replace(name, "_", " ")} > 0 in 5 min"
        aligner   = "ALIGN_SUM"
        reducer   = "REDUCE_SUM"
        period    = "300s"
        threshold = 0
        duration  = "0s"
      }
    },
    {
      sync_lag = {
        about     = "Calendars fall behind their notifications by more than ${var.sync_lag_alert_s} s: processors are short of capacity, Calendar is refusing listings, or messages are stuck."
        metric    = "logging.googleapis.com/user/${google_logging_metric.sync_lag.name}"
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
    { for name, alert in local.service_alerts : name => merge(alert, { on = "resource.type=\"cloud_run_revision\"", group_by = null }) },
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
