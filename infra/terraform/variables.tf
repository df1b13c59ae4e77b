variable "project_id" {
  description = "Google Cloud project that runs confsync."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id: 6 to 30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the Cloud Run services, the Scheduler jobs and the Firestore database."
  type        = string
  default     = "europe-west1"
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region: a Google Cloud region such as europe-west1."
  }
}

variable "firestore_location" {
  description = "Firestore location (a region such as europe-west1, or a multi-region: eur3, nam5)."
  type        = string
  default     = "eur3"
  validation {
    condition     = can(regex("^([a-z]+-[a-z]+[0-9]|eur3|nam5|nam7)$", var.firestore_location))
    error_message = "firestore_location: a region or one of the multi-regions eur3, nam5, nam7."
  }
}

variable "image" {
  description = "The confsync image (the repository's Dockerfile) in this configuration's repository, pinned by digest: REGION-docker.pkg.dev/PROJECT/confsync/confsync@sha256:DIGEST (`terraform output image_repository`). Null only for the first, targeted apply that creates the repository (../README.md)."
  type        = string
  default     = null
  validation {
    condition     = var.image == null || can(regex("^${var.region}-docker\\.pkg\\.dev/${var.project_id}/confsync/confsync@sha256:[a-f0-9]{64}$", var.image))
    error_message = "image: REGION-docker.pkg.dev/PROJECT/confsync/confsync@sha256:<64 hex>, in the repository registry.tf creates and pinned by digest, so every service runs the same build."
  }
}

variable "domain_verified" {
  description = "Whether public_domain is verified in Search Console for the identity that runs Terraform. The domain mapping to ingest is created only then; Cloud Run refuses one for an unverified domain (../README.md, step 7)."
  type        = bool
  default     = false
}

variable "public_domain" {
  description = "Domain of the ingest service (webhook and add-on API). Google sends watch notifications only to an HTTPS address on a domain verified in Search Console (../README.md)."
  type        = string
  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.public_domain))
    error_message = "public_domain: a lowercase DNS name such as confsync.example.com, without scheme or path."
  }
}

variable "addon_oauth_client_id" {
  description = "OAuth client id of the Apps Script add-on: the audience of the ID tokens it sends (ScriptApp.getIdentityToken)."
  type        = string
  validation {
    condition     = can(regex("^[0-9]+-[a-z0-9]+\\.apps\\.googleusercontent\\.com$", var.addon_oauth_client_id))
    error_message = "addon_oauth_client_id: an OAuth client id (NUMBER-ID.apps.googleusercontent.com)."
  }
}

variable "calendar_auth" {
  description = "How confsync reads users' calendars: service_account (a key with domain-wide delegation, Workspace only) or user_tokens (each user's refresh token, from the OAuth consent flow)."
  type        = string
  default     = "service_account"
  validation {
    condition     = contains(["service_account", "user_tokens"], var.calendar_auth)
    error_message = "calendar_auth: service_account or user_tokens."
  }
}

variable "provider_url" {
  description = "Base URL of the conferencing REST API (HTTPS)."
  type        = string
  validation {
    condition     = can(regex("^https://[^/\\s]+(/[^\\s]*)?$", var.provider_url))
    error_message = "provider_url: an https:// URL."
  }
}

variable "push_audience" {
  description = "Audience of the OIDC tokens Pub/Sub and Cloud Scheduler send (the services check it; Cloud Run accepts it as a custom audience)."
  type        = string
  default     = "confsync-internal"
  validation {
    condition     = length(var.push_audience) >= 8 && length(var.push_audience) <= 200
    error_message = "push_audience: 8 to 200 characters."
  }
}

variable "services" {
  description = "Per Cloud Run service: instance bounds, requests per instance, CPU and memory."
  type = map(object({
    min_instances = number
    max_instances = number
    concurrency   = number
    cpu           = string
    memory        = string
  }))
  default = {
    ingest    = { min_instances = 1, max_instances = 20, concurrency = 80, cpu = "1", memory = "512Mi" }
    processor = { min_instances = 1, max_instances = 50, concurrency = 20, cpu = "1", memory = "512Mi" }
    publisher = { min_instances = 1, max_instances = 20, concurrency = 40, cpu = "1", memory = "512Mi" }
  }
  validation {
    condition     = toset(keys(var.services)) == toset(["ingest", "processor", "publisher"])
    error_message = "services: exactly ingest, processor and publisher."
  }
  validation {
    condition = alltrue([
      for s in values(var.services) :
      s.min_instances >= 0 && s.max_instances >= max(1, s.min_instances) && s.concurrency >= 1 && s.concurrency <= 1000
    ])
    error_message = "services: 0 <= min_instances <= max_instances (at least 1), 1 <= concurrency <= 1000."
  }
}

variable "channel_renewal_schedule" {
  description = "Cron (UTC) of the watch-channel renewal tick; it fans out the renewal of channels expiring within renewal_window_s."
  type        = string
  default     = "7 * * * *"
}

variable "renewal_window_s" {
  description = "Channels expiring within this many seconds are renewed by each run."
  type        = number
  default     = 86400
  validation {
    condition     = var.renewal_window_s >= 7200
    error_message = "renewal_window_s: at least 7200 (two hourly runs), so one failed run never lets a channel lapse."
  }
}

variable "channel_sweep_schedule" {
  description = "Cron (UTC) of the daily channel sweep: every active calendar with links and no live channel is watched."
  type        = string
  default     = "37 3 * * *"
}

variable "lag_repair_schedule" {
  description = "Cron (UTC) of the sync-lag repair (lost notifications, unsettled commands; ingest/lag.py)."
  type        = string
  default     = "* * * * *"
}

variable "backfill_schedule" {
  description = "Cron (UTC) of the daily reconciliation backfill (a full resync of every active calendar)."
  type        = string
  default     = "30 3 * * *"
}

variable "backfill_requests_per_s" {
  description = "Calendars per second the backfill job hands to the processors, each one listing or more (keep under the project's Calendar API quota)."
  type        = number
  default     = 20
  validation {
    condition     = var.backfill_requests_per_s > 0 && var.backfill_requests_per_s <= 500
    error_message = "backfill_requests_per_s: more than 0, at most 500."
  }
}

variable "sync_lag_alert_s" {
  description = "Alert when the oldest lagging calendar the lag repair finds is this many seconds behind."
  type        = number
  default     = 300
  validation {
    condition     = var.sync_lag_alert_s >= 60
    error_message = "sync_lag_alert_s: at least 60 (the repair itself waits 60 s before it acts)."
  }
}

variable "notification_channels" {
  description = "Monitoring notification channel ids (projects/P/notificationChannels/N) the alerts go to; at least one, or every alert fires unseen (../README.md, step 4)."
  type        = list(string)
  validation {
    condition     = length(var.notification_channels) > 0
    error_message = "notification_channels: at least one, or no one hears an alert (create one: ../README.md, step 4)."
  }
  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "notification_channels: ids of the form projects/PROJECT/notificationChannels/NUMBER."
  }
}

variable "backlog_alert_s" {
  description = "Alert when a worker subscription's oldest unacknowledged message is this many seconds old for 5 minutes (Pub/Sub's own view of a stuck or overloaded stage)."
  type        = number
  default     = 900
  validation {
    condition     = var.backlog_alert_s >= 120
    error_message = "backlog_alert_s: at least 120 (retries back off for minutes on their own)."
  }
}

variable "deletion_protection" {
  description = "Protect the Firestore database, the Cloud Run services and the secrets from `terraform destroy`."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}
}

# The one source of truth is confsync's Settings: this default is what
# `confsync pubsub bootstrap --print-terraform-vars` prints (tests/test_infra checks it). To change
# a name or a policy, set the CONFSYNC_ variables, print, and save the output as
# pubsub.auto.tfvars.json next to this file.
variable "pubsub" {
  description = "Pub/Sub topics by role and subscriptions by name, as `confsync pubsub bootstrap --print-terraform-vars` prints them."
  type = object({
    topics = object({
      calendar_changes         = string
      calendar_changes_dead    = string
      conference_commands      = string
      conference_commands_dead = string
      channel_work             = string
      channel_work_dead        = string
    })
    subscriptions = map(object({
      topic                 = string
      ordered               = bool
      ack_deadline_seconds  = number
      min_backoff_seconds   = number
      max_backoff_seconds   = number
      dead_letter_topic     = string
      max_delivery_attempts = number
      retention_seconds     = number
    }))
  })
  default = {
    topics = {
      calendar_changes         = "calendar-changes"
      calendar_changes_dead    = "calendar-changes-dead"
      conference_commands      = "conference-commands"
      conference_commands_dead = "conference-commands-dead"
      channel_work             = "channel-work"
      channel_work_dead        = "channel-work-dead"
    }
    subscriptions = {
      "calendar-changes-processor" = {
        topic                 = "calendar-changes"
        ordered               = true
        ack_deadline_seconds  = 60
        min_backoff_seconds   = 1
        max_backoff_seconds   = 600
        dead_letter_topic     = "calendar-changes-dead"
        max_delivery_attempts = 20
        retention_seconds     = 604800
      }
      "calendar-changes-dead-hold" = {
        topic                 = "calendar-changes-dead"
        ordered               = false
        ack_deadline_seconds  = 600
        min_backoff_seconds   = null
        max_backoff_seconds   = null
        dead_letter_topic     = null
        max_delivery_attempts = 0
        retention_seconds     = 604800
      }
      "conference-commands-publisher" = {
        topic                 = "conference-commands"
        ordered               = true
        ack_deadline_seconds  = 60
        min_backoff_seconds   = 1
        max_backoff_seconds   = 600
        dead_letter_topic     = "conference-commands-dead"
        max_delivery_attempts = 20
        retention_seconds     = 604800
      }
      "conference-commands-dead-hold" = {
        topic                 = "conference-commands-dead"
        ordered               = false
        ack_deadline_seconds  = 600
        min_backoff_seconds   = null
        max_backoff_seconds   = null
        dead_letter_topic     = null
        max_delivery_attempts = 0
        retention_seconds     = 604800
      }
      "channel-work-ingest" = {
        topic                 = "channel-work"
        ordered               = true
        ack_deadline_seconds  = 60
        min_backoff_seconds   = 1
        max_backoff_seconds   = 600
        dead_letter_topic     = "channel-work-dead"
        max_delivery_attempts = 20
        retention_seconds     = 604800
      }
      "channel-work-dead-hold" = {
        topic                 = "channel-work-dead"
        ordered               = false
        ack_deadline_seconds  = 600
        min_backoff_seconds   = null
        max_backoff_seconds   = null
        dead_letter_topic     = null
        max_delivery_attempts = 0
        retention_seconds     = 604800
      }
    }
  }
  validation {
    condition = alltrue([
      for s in values(var.pubsub.subscriptions) :
      s.ack_deadline_seconds >= 10 && s.ack_deadline_seconds <= 600 && (
        (s.min_backoff_seconds == null && s.max_backoff_seconds == null) ||
        (s.min_backoff_seconds != null && s.max_backoff_seconds != null ? s.min_backoff_seconds >= 0 && s.max_backoff_seconds <= 600 && s.min_backoff_seconds <= s.max_backoff_seconds : false)
      )
    ])
    error_message = "pubsub.subscriptions: ack deadline 10-600 s; backoff both null (no retry policy) or 0-600 s with min <= max (Pub/Sub's limits)."
  }
  validation {
    condition = alltrue([
      for s in values(var.pubsub.subscriptions) :
      s.dead_letter_topic == null || (s.max_delivery_attempts >= 5 && s.max_delivery_attempts <= 100)
    ])
    error_message = "pubsub.subscriptions: max_delivery_attempts must be 5-100 where a dead-letter topic is set."
  }
  validation {
    condition = alltrue([
      for s in values(var.pubsub.subscriptions) : contains(values(var.pubsub.topics), s.topic)
    ])
    error_message = "pubsub.subscriptions: every subscription's topic must be one of pubsub.topics."
  }
  validation {
    condition     = alltrue([for s in values(var.pubsub.subscriptions) : s.retention_seconds >= 600 && s.retention_seconds <= 604800])
    error_message = "pubsub.subscriptions: retention_seconds 600 (10 min) to 604800 (7 days), Pub/Sub's limits."
  }
}

variable "oauth_client_id" {
  description = "confsync's Google OAuth client (a web application, not the add-on's): users sign in and grant Calendar access through it on the connect pages (CONFSYNC_OAUTH_CLIENT_ID). With calendar_auth = user_tokens, also the client the tokens file's refresh tokens were issued to. Its secret is the confsync-oauth-client-secret secret."
  type        = string
  validation {
    condition     = can(regex("^[0-9]+-[a-z0-9]+\\.apps\\.googleusercontent\\.com$", var.oauth_client_id))
    error_message = "oauth_client_id: an OAuth client id (NUMBER-ID.apps.googleusercontent.com)."
  }
}

variable "vendor_client_id" {
  description = "confsync's OAuth client id at the conferencing service: users connect their vendor account through it (CONFSYNC_VENDOR_CLIENT_ID). Its secret is the confsync-vendor-client-secret secret."
  type        = string
  validation {
    condition     = can(regex("^[^\\s]{1,200}$", var.vendor_client_id))
    error_message = "vendor_client_id: 1 to 200 characters, no spaces."
  }
}

variable "vault_key_version" {
  description = "Version of the confsync-vault-key secret the services read. Pinned, not latest: an instance started after a new version is added would otherwise seal with a key the others cannot open. Change it only to rotate (../README.md, \"Rotating the vault key\")."
  type        = string
  default     = "1"
  validation {
    condition     = can(regex("^[1-9][0-9]*$", var.vault_key_version))
    error_message = "vault_key_version: a secret version number (1, 2, ...)."
  }
}

variable "delegated_domains" {
  description = "Workspace domains whose admin allowed the calendar service account domain-wide delegation (calendar_auth = service_account): their users skip Google's consent on the connect pages (CONFSYNC_DELEGATED_DOMAINS)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for d in var.delegated_domains : can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", d))])
    error_message = "delegated_domains: lowercase DNS names such as example.com."
  }
  validation {
    condition     = length(var.delegated_domains) == 0 || var.calendar_auth == "service_account"
    error_message = "delegated_domains: needs calendar_auth = service_account, whose key is the one delegated."
  }
}

variable "allowed_domains" {
  description = "Domains whose users may call the add-on API; empty allows any (CONFSYNC_ALLOWED_DOMAINS; consumer accounts match as gmail.com)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for d in var.allowed_domains : can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", d))])
    error_message = "allowed_domains: lowercase DNS names such as example.com."
  }
}

variable "addon_rate_per_min" {
  description = "Add-on API requests one user may make per minute, per ingest instance; 0 turns the limit off (CONFSYNC_ADDON_RATE_PER_MIN)."
  type        = number
  default     = 60
  validation {
    condition     = var.addon_rate_per_min >= 0
    error_message = "addon_rate_per_min: 0 (off) or more."
  }
}

variable "tracing" {
  description = "Where the services send each change's spans (CONFSYNC_TRACING): gcp (Cloud Trace, through its OTLP endpoint, as each service's account) or off. The log lines carry each change's trace either way; otlp needs a collector this configuration does not deploy."
  type        = string
  default     = "gcp"
  validation {
    condition     = contains(["gcp", "off"], var.tracing)
    error_message = "tracing: gcp or off."
  }
}
