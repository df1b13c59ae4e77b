# confsync on Google Cloud. Deploy steps, the secrets to fill in and the capacity plan: ../README.md.
terraform {
  required_version = ">= 1.9" # validations that refer to other variables
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.43, < 8.0" # 6.43: deletion_protection on Secret Manager secrets
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # Google-managed service agents this configuration grants roles to.
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  public_base_url = "https://${var.public_domain}"
  webhook_url     = "${local.public_base_url}/notifications"
  addon_api_url   = "${local.public_base_url}/v1/conferences"
  labels          = merge(var.labels, { app = "confsync" })
  # Where Google and the vendor send users back after consent: each must be registered with its
  # OAuth client (../README.md, step 2).
  oauth_redirect_uris = {
    google          = "${local.public_base_url}/connect/google"
    google_settings = "${local.public_base_url}/settings/google"
    vendor          = "${local.public_base_url}/connect/vendor"
  }
}

# Every API a resource here or a deploy step (../README.md) calls: Artifact Registry and Cloud
# Build for the image, IAM Credentials for keyless domain-wide delegation, Telemetry and Cloud
# Trace for the services' spans (CONFSYNC_TRACING=gcp). Terraform needs
# Service Usage and Cloud Resource Manager on before it can enable the rest (README step 1);
# they are listed too, so nothing here rests on a project's defaults.
resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "calendar-json.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtrace.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "serviceusage.googleapis.com",
    "telemetry.googleapis.com",
  ])
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
