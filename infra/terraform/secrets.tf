# Secret Manager holds every credential; Terraform creates the secrets and who may read them,
# never their values (those would land in the state file, and the vault key with them would
# open every sealed grant). Add versions with `gcloud secrets versions add` before the first
# full apply (../README.md, step 5).
locals {
  # env: the setting each secret fills, read as an environment variable; calendar-credentials
  # is a file instead, mounted where calendar_env says (run.tf).
  secrets = {
    provider-api-key = {
      about = "API key confsync sends to the conferencing API."
      env   = "CONFSYNC_PROVIDER_API_KEY"
    }
    calendar-credentials = {
      about = "Calendar credentials file: a service-account key with domain-wide delegation, or the users' refresh tokens (var.calendar_auth)."
      env   = null
    }
    oauth-client-secret = {
      about = "Secret of confsync's Google OAuth client (var.oauth_client_id): the connect pages and refreshing users' Google grants."
      env   = "CONFSYNC_OAUTH_CLIENT_SECRET"
    }
    vendor-client-secret = {
      about = "Secret of confsync's OAuth client at the conferencing service (var.vendor_client_id): the connect pages and refreshing users' vendor grants."
      env   = "CONFSYNC_VENDOR_CLIENT_SECRET"
    }
    vault-key = {
      about = "The token vault's key-encryption key, base64 of 32 random bytes: it seals every user's refresh tokens and signs connect links. Lost, every user must connect again."
      env   = "CONFSYNC_VAULT_KEY"
    }
  }
  # Who may read which secret: exactly what each workload is given (run.tf), so no identity
  # holds a secret it does not use.
  secret_readers = merge(
    { for role, r in local.roles : role => concat(r.secrets, r.calendar ? ["calendar-credentials"] : []) },
    { backfill = concat(local.backfill_secrets, ["calendar-credentials"]) },
  )
  secret_grants = merge([
    for who, names in local.secret_readers : { for name in names : "${name}/${who}" => { secret = name, who = who } }
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
  # Deleting a secret deletes its versions: for the vault key, every user's grants with it.
  deletion_protection = var.deletion_protection
  # A destroyed vault-key version stays disabled, and recoverable, for 30 days first.
  version_destroy_ttl = each.key == "vault-key" ? "2592000s" : null
  depends_on          = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "readers" {
  for_each  = local.secret_grants
  secret_id = google_secret_manager_secret.confsync[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.confsync[each.value.who].member
}
