# confsync's state: calendars (sync tokens, links), channels, conferences, the command outbox
# (confsync/store/firestore.py). A database of its own, so confsync can share a project.
resource "google_firestore_database" "confsync" {
  name                              = "confsync"
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC" # the store's transactions retry on contention
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.deletion_protection ? "ABANDON" : "DELETE"
  depends_on                        = [google_project_service.apis]
}

# The one query that needs a composite index: calendars lagging behind their notifications
# (Store.lagging_calendars; the fields are COMPOSITE_INDEXES in confsync/store/firestore.py,
# and tests/test_infra checks that this index declares the same). Single-field queries
# (channels by expiration, the outbox by due time, links by state) use automatic indexes.
resource "google_firestore_index" "lagging_calendars" {
  database    = google_firestore_database.confsync.name
  collection  = "calendars"
  query_scope = "COLLECTION"

  fields {
    field_path = "lagging"
    order      = "ASCENDING"
  }
  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "last_notified_at"
    order      = "ASCENDING"
  }
}
