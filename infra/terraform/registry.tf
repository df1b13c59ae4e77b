# The Artifact Registry repository the image is pushed to (../README.md, step 5). var.image must
# name an image in it (variables.tf): Cloud Run's service agent may pull from its own project's
# repositories, and from nowhere else without grants this configuration does not make.
resource "google_artifact_registry_repository" "confsync" {
  #checkov:skip=CKV_GCP_84:Encrypted at rest with Google-managed keys; it holds the public code's image, no data. A customer-managed key is a per-organisation policy choice (infra/README.md, "Encryption").
  location      = var.region
  repository_id = "confsync"
  format        = "DOCKER"
  description   = "confsync's image (the repository's Dockerfile); the services run it by digest."
  labels        = local.labels
  depends_on    = [google_project_service.apis]
}

locals {
  image_repository = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.confsync.repository_id}/confsync"
}
