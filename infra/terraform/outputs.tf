output "webhook_url" {
  description = "Address Calendar posts watch notifications to (CONFSYNC_WEBHOOK_URL); its domain must be verified in Search Console."
  value       = local.webhook_url
}

output "addon_api_url" {
  description = "The add-on's create-conference endpoint: put it in the Apps Script project's script properties (addon/README.md)."
  value       = local.addon_api_url
}

output "oauth_redirect_uris" {
  description = "Redirect URIs to register: google and google_settings with the OAuth client var.oauth_client_id, vendor with the vendor's client var.vendor_client_id (../README.md, step 2)."
  value       = local.oauth_redirect_uris
}

output "dns_records" {
  description = "DNS records to create at the domain's registrar so public_domain reaches the ingest service (null until domain_verified maps the domain)."
  value       = var.domain_verified ? google_cloud_run_domain_mapping.ingest[0].status[0].resource_records : null
}

output "image_repository" {
  description = "Where to push the image (../README.md, step 5); var.image is this, then @sha256:DIGEST."
  value       = local.image_repository
}

output "service_urls" {
  description = "run.app address of each Cloud Run service (processor and publisher answer only Pub/Sub)."
  value       = { for role, service in google_cloud_run_v2_service.confsync : role => service.uri }
}

output "service_accounts" {
  description = "Email of each confsync identity."
  value       = { for role, account in google_service_account.confsync : role => account.email }
}
