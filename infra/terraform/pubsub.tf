# Topics and subscriptions: the names and policies are var.pubsub, which is what
# `confsync pubsub bootstrap` creates on the emulator (see variables.tf).

locals {
  topic_names = toset(values(var.pubsub.topics))

  # A subscription with a dead-letter topic is a worker subscription: Pub/Sub pushes it to the
  # service of its topic, at /pubsub/TOPIC (processors/app.py, publishers/app.py, ingest/app.py:
  # ingest fans channel passes out to itself). One without holds dead letters until
  # `confsync deadletter list|replay` pulls them.
  push_service_uri = {
    (var.pubsub.topics.calendar_changes)    = google_cloud_run_v2_service.confsync["processor"].uri
    (var.pubsub.topics.conference_commands) = google_cloud_run_v2_service.confsync["publisher"].uri
    (var.pubsub.topics.channel_work)        = google_cloud_run_v2_service.confsync["ingest"].uri
  }
  worker_subscriptions = { for name, s in var.pubsub.subscriptions : name => s if s.dead_letter_topic != null }
  dead_letter_topics   = toset([for s in values(local.worker_subscriptions) : s.dead_letter_topic])
  # The request timeout of the service each topic pushes to (run.tf): its handler answers
  # within the ack deadline, so Cloud Run never runs a request Pub/Sub has already redelivered.
  ack_deadline_s = { for s in values(local.worker_subscriptions) : s.topic => s.ack_deadline_seconds }
}

resource "google_pubsub_topic" "confsync" {
  #checkov:skip=CKV_GCP_83:Encrypted at rest with Google-managed keys; messages carry calendar and conference ids and event fields the conferencing service already holds. A customer-managed key is a per-organisation policy choice (infra/README.md, "Encryption").
  for_each = local.topic_names
  name     = each.value
  # A dead letter is a command as it was published, its attendees' emails included (a replay
  # needs the event's whole state). Its topic keeps it as long as its holding subscription does
  # (7 days: topology.py), no longer: within that week `gcloud pubsub subscriptions seek` can
  # still bring back one an operator acknowledged too early.
  message_retention_duration = contains(local.dead_letter_topics, each.value) ? "604800s" : "86400s"
  labels                     = local.labels
  depends_on                 = [google_project_service.apis]
}

resource "google_pubsub_subscription" "confsync" {
  for_each                   = var.pubsub.subscriptions
  name                       = each.key
  topic                      = google_pubsub_topic.confsync[each.value.topic].id
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  enable_message_ordering    = each.value.ordered
  message_retention_duration = "${each.value.retention_seconds}s"
  labels                     = local.labels

  expiration_policy {
    ttl = "" # never: an idle dead-letter subscription must not vanish with its messages
  }

  # No retry policy (null backoff): a nacked message comes back at once (dead-letter holding
  # subscriptions, which `confsync deadletter list` reads by handing each message back).
  dynamic "retry_policy" {
    for_each = each.value.min_backoff_seconds == null ? [] : [each.value]
    content {
      minimum_backoff = "${retry_policy.value.min_backoff_seconds}s"
      maximum_backoff = "${retry_policy.value.max_backoff_seconds}s"
    }
  }

  dynamic "dead_letter_policy" {
    for_each = each.value.dead_letter_topic == null ? [] : [each.value]
    content {
      dead_letter_topic     = google_pubsub_topic.confsync[dead_letter_policy.value.dead_letter_topic].id
      max_delivery_attempts = dead_letter_policy.value.max_delivery_attempts
    }
  }

  dynamic "push_config" {
    for_each = each.value.dead_letter_topic == null ? [] : [local.push_service_uri[each.value.topic]]
    content {
      push_endpoint = "${push_config.value}/pubsub/${each.value.topic}"
      oidc_token {
        service_account_email = google_service_account.confsync["push"].email
        audience              = var.push_audience
      }
    }
  }

  depends_on = [
    google_pubsub_topic_iam_member.agent_forwards_dead_letters,
    google_service_account_iam_member.agent_signs_push_tokens,
  ]
}

# Pub/Sub's service agent moves a message to the dead-letter topic after max_delivery_attempts:
# it must publish there and acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "agent_forwards_dead_letters" {
  for_each = local.dead_letter_topics
  topic    = google_pubsub_topic.confsync[each.value].name
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "agent_acks_dead_letters" {
  for_each     = local.worker_subscriptions
  subscription = google_pubsub_subscription.confsync[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# ... and mint the OIDC tokens of push requests as the push service account.
resource "google_service_account_iam_member" "agent_signs_push_tokens" {
  service_account_id = google_service_account.confsync["push"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# What each confsync identity may publish (its own messages and its own dead letters) and see.
locals {
  publishes = {
    ingest = [ # webhook; lag repair; channel passes fanned out, and their dead letters
      var.pubsub.topics.calendar_changes, var.pubsub.topics.conference_commands,
      var.pubsub.topics.channel_work, var.pubsub.topics.channel_work_dead,
    ]
    processor = [var.pubsub.topics.conference_commands, var.pubsub.topics.calendar_changes_dead]
    publisher = [var.pubsub.topics.conference_commands_dead]
    backfill  = [var.pubsub.topics.calendar_changes] # one resync request per calendar
  }
  publish_grants = merge([
    for who, topics in local.publishes : { for topic in topics : "${who}/${topic}" => { who = who, topic = topic } }
  ]...)
}

resource "google_pubsub_topic_iam_member" "publish" {
  for_each = local.publish_grants
  topic    = google_pubsub_topic.confsync[each.value.topic].name
  role     = "roles/pubsub.publisher"
  member   = google_service_account.confsync[each.value.who].member
}

# /readyz asks Pub/Sub for the calendar-changes topic (stack/services.py).
resource "google_pubsub_topic_iam_member" "readiness" {
  for_each = toset(["ingest", "processor", "publisher"])
  topic    = google_pubsub_topic.confsync[var.pubsub.topics.calendar_changes].name
  role     = "roles/pubsub.viewer"
  member   = google_service_account.confsync[each.value].member
}
