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

# Collections are named as the store names them (confsync/store/firestore.py,
# firestore_accounts.py); the services use no collection prefix (prefixes are for tests).

# The queries that need a composite index, each one of COMPOSITE_INDEXES in
# confsync/store/firestore.py (tests/test_infra checks that these declare the same). Other
# queries (the outbox by due time, links by state, expired connect flows, calendars of one
# status by id, the counts by one field's value) filter or order on one field and use
# automatic indexes.

# Calendars lagging behind their notifications (Store.lagging_calendars).
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

# Calendars no listing has covered for a while, longest quiet first (Store.quiet_calendars):
# lag repair lists them even without a notification, in case their channel went silent.
resource "google_firestore_index" "quiet_calendars" {
  database    = google_firestore_database.confsync.name
  collection  = "calendars"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "last_synced_at"
    order      = "ASCENDING"
  }
}

# Live channels expiring before a time, counted for `confsync status` and GET /v1/status
# (Store.count_channels_expiring_before): an equality and a range filter on two fields.
resource "google_firestore_index" "expiring_channels" {
  database    = google_firestore_database.confsync.name
  collection  = "channels"
  query_scope = "COLLECTION"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "expiration"
    order      = "ASCENDING"
  }
}

# Live channels expiring before a horizon, soonest first, a page at a time (Store.channels_due):
# the renewal pass; the channel id orders ties, so a page's cursor is exact.
resource "google_firestore_index" "due_channels" {
  database    = google_firestore_database.confsync.name
  collection  = "channels"
  query_scope = "COLLECTION"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "expiration"
    order      = "ASCENDING"
  }
  fields {
    field_path = "channel_id"
    order      = "ASCENDING"
  }
}

# One owner's commands held for their reconnect, oldest first (Store.held_commands).
resource "google_firestore_index" "held_commands" {
  database    = google_firestore_database.confsync.name
  collection  = "held"
  query_scope = "COLLECTION"

  fields {
    field_path = "owner"
    order      = "ASCENDING"
  }
  fields {
    field_path = "held_at"
    order      = "ASCENDING"
  }
  fields {
    field_path = "command_id"
    order      = "ASCENDING"
  }
}

# A backfill job's calendars in one state, in id order (Store.backfill_entries: `confsync
# backfill status` lists the failed ones with their cause).
resource "google_firestore_index" "backfill_calendars" {
  database    = google_firestore_database.confsync.name
  collection  = "backfill_calendars"
  query_scope = "COLLECTION"

  fields {
    field_path = "job_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "calendar_id"
    order      = "ASCENDING"
  }
}

# Firestore deletes a connect flow once its expires_at has passed (within a day of it: the
# flow checks its own expiry when read). No index_config: the field keeps its automatic
# index, which Store.purge_flows queries, and connect flows are written far too rarely for
# an increasing timestamp to crowd one end of the index.
resource "google_firestore_field" "connect_flows_ttl" {
  database   = google_firestore_database.confsync.name
  collection = "connect_flows"
  field      = "expires_at"
  ttl_config {}
}

# Firestore deletes an event's link and its conference's document (applied version, and the
# pointer to its owning link) once their expires_at has passed: CONFSYNC_RETAIN_DAYS after the
# event ends, or after its conference was deleted; never where it is null (a live unbounded
# series). confsync/retention.py has the rule; SQLite's sweep does the same. TTL deletes within
# about a day of expiry; a record past it already counts as gone (publishers/apply.py). Links
# live under each calendar: the policy is on the links collection group. index_config {}:
# nothing queries expires_at here, and an index on a timestamp that grows with time takes all
# its writes at one end (Firestore's advice for TTL fields).
resource "google_firestore_field" "retention_ttl" {
  for_each   = toset(["links", "conferences"])
  database   = google_firestore_database.confsync.name
  collection = each.value
  field      = "expires_at"
  ttl_config {}
  index_config {}
}
