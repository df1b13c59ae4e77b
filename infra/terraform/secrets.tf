# Secret Manager holds every credential; Terraform creates the secrets and who may read them,
# never their values (those would land in the state file). Add versions with
# `gcloud secrets versions add` before the first full apply (../README.md, step 4).
locals {
  secrets = {
    provider-api-key = {
      about   = "API key confsync sends to the conferencing API (CONFSYNC_PROVIDER_API_KEY)."
      readers = ["ingest", "publisher"]
    }
    calendar-credentials = {
      about   = "Calendar credentials file: a service-account key with domain-wide delegation, or the users' refresh tokens (var.calendar_auth)."
      readers = ["ingest", "processor", "backfill"]
    }
    oauth-client-secret = {
      about   = "Secret of the OAuth client the users' refresh tokens were issued to (read only when calendar_auth = user_tokens)."
      readers = ["ingest", "processor", "backfill"]
    }
  }
  secret_grants = merge([
    for name, s in local.secrets : { for who in s.readers : "${name}/${who}" => { secret = name, who = who } }
  ]...)
  calendar_credentials_path = "/secrets/calendar/credentials.json"
  calendar_credentials_env  = var.calendar_auth == "service_account" ? "CONFSYNC_CALENDAR_SERVICE_ACCOUNT_FILE" : "CONFSYNC_CALENDAR_USER_TOKENS_FILE"
}

resource "google_secret_manager_secret" "confsync" {
  for_each  = local.secrets
  secret_id = "confsync-${each.key}"
  labels    = local.labels
  annotations = {
    about = each.value.about
  }
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "readers" {
  for_each  = local.secret_grants
  secret_id = google_secret_manager_secret.confsync[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.confsync[each.value.who].member
}
