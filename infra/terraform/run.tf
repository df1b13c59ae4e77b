# Three Cloud Run services from one image (the repository's Dockerfile), the role chosen by the
# arguments, and the reconciliation backfill as a Cloud Run job.

locals {
  max_delivery_attempts = max(0, [for s in values(local.worker_subscriptions) : s.max_delivery_attempts]...)

  # Settings every role reads (confsync/settings.py; `confsync config` lists them all).
  common_env = {
    CONFSYNC_PROJECT_ID                     = var.project_id
    CONFSYNC_STORE_URL                      = "firestore://${var.project_id}/${google_firestore_database.confsync.name}"
    CONFSYNC_LOG_FORMAT                     = "json"
    CONFSYNC_TRACING                        = var.tracing
    CONFSYNC_DELIVERY                       = "push"
    CONFSYNC_TOPIC_CALENDAR_CHANGES         = var.pubsub.topics.calendar_changes
    CONFSYNC_TOPIC_CALENDAR_CHANGES_DEAD    = var.pubsub.topics.calendar_changes_dead
    CONFSYNC_TOPIC_CONFERENCE_COMMANDS      = var.pubsub.topics.conference_commands
    CONFSYNC_TOPIC_CONFERENCE_COMMANDS_DEAD = var.pubsub.topics.conference_commands_dead
    CONFSYNC_TOPIC_CHANNEL_WORK             = var.pubsub.topics.channel_work
    CONFSYNC_TOPIC_CHANNEL_WORK_DEAD        = var.pubsub.topics.channel_work_dead
    CONFSYNC_PUBSUB_MAX_DELIVERY_ATTEMPTS   = tostring(local.max_delivery_attempts)
    CONFSYNC_PUSH_AUDIENCE                  = var.push_audience
    CONFSYNC_PUSH_SERVICE_ACCOUNT           = google_service_account.confsync["push"].email
  }
  calendar_env = { (local.calendar_credentials_env) = local.calendar_credentials_path }
  # confsync's own OAuth clients (their secrets: secrets.tf): Google's, through which users
  # sign in and grant Calendar, and the conferencing vendor's.
  google_client_env = { CONFSYNC_OAUTH_CLIENT_ID = var.oauth_client_id }
  vendor_client_env = { CONFSYNC_VENDOR_CLIENT_ID = var.vendor_client_id }
  delegated_env     = { CONFSYNC_DELEGATED_DOMAINS = join(",", var.delegated_domains) }
  # The backfill lists calendars with the tokens file's grants only when calendar_auth = user_tokens.
  backfill_secrets = var.calendar_auth == "user_tokens" ? ["oauth-client-secret"] : []

  # secrets: the Secret Manager secrets (secrets.tf) the role reads as settings, and the only
  # ones its account may read; calendar adds the mounted Calendar credentials file.
  roles = {
    ingest = {
      args      = ["serve", "ingest", "--host", "0.0.0.0", "--port", "8080"]
      ingress   = "INGRESS_TRAFFIC_ALL"
      audiences = []
      timeout   = "${local.ingest_timeout_s}s" # the scheduler's longest attempt deadline
      calendar  = true
      env = merge(local.calendar_env, local.google_client_env, local.vendor_client_env, local.delegated_env, {
        CONFSYNC_WEBHOOK_URL               = local.webhook_url
        CONFSYNC_PUBLIC_URL                = local.public_base_url # the connect pages' redirect URIs (outputs.tf)
        CONFSYNC_ADDON_AUDIENCE            = var.addon_oauth_client_id
        CONFSYNC_ALLOWED_DOMAINS           = join(",", var.allowed_domains)
        CONFSYNC_ADDON_RATE_PER_MIN        = tostring(var.addon_rate_per_min)
        CONFSYNC_SCHEDULER_SERVICE_ACCOUNT = google_service_account.confsync["scheduler"].email
        CONFSYNC_PROVIDER_URL              = var.provider_url
        CONFSYNC_LAG_REPAIR_INTERVAL_S     = "0" # Cloud Scheduler runs it (scheduler.tf): an idle instance has no CPU
        CONFSYNC_NOTIFY_FOLD_S             = "0" # a fold is published by a timer after its requests are answered: no CPU then
      })
      # the add-on API and the connect pages: both clients, sealing grants, signing connect links
      secrets = ["provider-api-key", "oauth-client-secret", "vendor-client-secret", "vault-key"]
    }
    processor = {
      args      = ["serve", "processor", "--push", "--host", "0.0.0.0", "--port", "8080"]
      ingress   = "INGRESS_TRAFFIC_INTERNAL_ONLY" # Pub/Sub push from this project counts as internal
      audiences = [var.push_audience]
      timeout   = "${local.ack_deadline_s[var.pubsub.topics.calendar_changes]}s"
      calendar  = true
      env       = merge(local.calendar_env, local.google_client_env, local.delegated_env, { CONFSYNC_PUSH_AUTH = "platform" }) # Cloud Run IAM checks push tokens
      # reads calendars with the users' Google grants: opens and refreshes them
      secrets = ["oauth-client-secret", "vault-key"]
    }
    publisher = {
      args      = ["serve", "publisher", "--push", "--host", "0.0.0.0", "--port", "8080"]
      ingress   = "INGRESS_TRAFFIC_INTERNAL_ONLY"
      audiences = [var.push_audience]
      timeout   = "${local.ack_deadline_s[var.pubsub.topics.conference_commands]}s"
      calendar  = false
      env       = merge(local.vendor_client_env, { CONFSYNC_PROVIDER_URL = var.provider_url, CONFSYNC_PUSH_AUTH = "platform" })
      # calls the conferencing API with its key and the users' vendor grants
      secrets = ["provider-api-key", "vendor-client-secret", "vault-key"]
    }
  }
}

resource "google_cloud_run_v2_service" "confsync" {
  for_each            = local.roles
  name                = "confsync-${each.key}"
  location            = var.region
  ingress             = each.value.ingress
  custom_audiences    = each.value.audiences
  deletion_protection = var.deletion_protection
  labels              = local.labels
  # Ingest is public without an allUsers grant, which domain-restricted sharing refuses:
  # watch notifications, the add-on and users' browsers (the connect pages) carry no Google
  # IAM identity, and each route checks its caller itself (channel token; add-on ID token;
  # scheduler OIDC token; signed connect link, flow cookie and OAuth state).
  invoker_iam_disabled = each.key == "ingest"

  template {
    service_account                  = google_service_account.confsync[each.key].email
    max_instance_request_concurrency = var.services[each.key].concurrency
    timeout                          = each.value.timeout
    labels                           = local.labels

    scaling {
      min_instance_count = var.services[each.key].min_instances
      max_instance_count = var.services[each.key].max_instances
    }

    containers {
      image = var.image
      args  = each.value.args

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.services[each.key].cpu
          memory = var.services[each.key].memory
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = merge(local.common_env, each.value.env)
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = toset(each.value.secrets)
        content {
          name = local.secrets[env.value].env
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.confsync[env.value].secret_id
              version = env.value == "vault-key" ? var.vault_key_version : "latest"
            }
          }
        }
      }

      dynamic "volume_mounts" {
        for_each = each.value.calendar ? [dirname(local.calendar_credentials_path)] : []
        content {
          name       = "calendar-credentials"
          mount_path = volume_mounts.value
        }
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 2
        failure_threshold = 30
      }

      liveness_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds = 30
      }
    }

    dynamic "volumes" {
      for_each = each.value.calendar ? [basename(local.calendar_credentials_path)] : []
      content {
        name = "calendar-credentials"
        secret {
          secret = google_secret_manager_secret.confsync["calendar-credentials"].secret_id
          items {
            version = "latest"
            path    = volumes.value
          }
        }
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.readers, google_project_iam_member.firestore]

  lifecycle {
    precondition {
      condition     = var.image != null
      error_message = "image: build and push the image first, then set var.image to its digest (../README.md, step 5)."
    }
  }
}

# The daily reconciliation: `confsync backfill --all` pages through the store's calendars and
# publishes one resync request per calendar, paced; the processors list them
# (processors/backfill.py). Its progress is in the store, so the retried task resumes. A job,
# not a route: at 1M calendars and 20/s the requests take 14 h.
resource "google_cloud_run_v2_job" "backfill" {
  name                = "confsync-backfill"
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    task_count = 1
    labels     = local.labels

    template {
      service_account = google_service_account.confsync["backfill"].email
      timeout         = "86400s"
      max_retries     = 1

      containers {
        image = var.image
        args  = ["backfill", "--all", "--json"]

        resources {
          limits = {
            cpu    = "1"
            memory = "1Gi"
          }
        }

        dynamic "env" {
          for_each = merge(local.common_env, local.calendar_env, var.calendar_auth == "user_tokens" ? local.google_client_env : {}, {
            CONFSYNC_BACKFILL_REQUESTS_PER_S = tostring(var.backfill_requests_per_s)
          })
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = toset(local.backfill_secrets)
          content {
            name = local.secrets[env.value].env
            value_source {
              secret_key_ref {
                secret  = google_secret_manager_secret.confsync[env.value].secret_id
                version = "latest"
              }
            }
          }
        }

        volume_mounts {
          name       = "calendar-credentials"
          mount_path = dirname(local.calendar_credentials_path)
        }
      }

      volumes {
        name = "calendar-credentials"
        secret {
          secret = google_secret_manager_secret.confsync["calendar-credentials"].secret_id
          items {
            version = "latest"
            path    = basename(local.calendar_credentials_path)
          }
        }
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.readers, google_project_iam_member.firestore]

  lifecycle {
    precondition {
      condition     = var.image != null
      error_message = "image: build and push the image first, then set var.image to its digest (../README.md, step 5)."
    }
  }
}

# Google delivers watch notifications only to a domain verified in Search Console, so the
# webhook lives on var.public_domain (the DNS records to create are an output). Cloud Run maps
# only a domain verified for the identity that applies, so the mapping waits for domain_verified.
resource "google_cloud_run_domain_mapping" "ingest" {
  count    = var.domain_verified ? 1 : 0
  location = var.region
  name     = var.public_domain
  metadata {
    namespace = var.project_id
    labels    = local.labels
  }
  spec {
    route_name = google_cloud_run_v2_service.confsync["ingest"].name
  }
}
