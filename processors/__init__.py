"""CalendarChanged -> incremental sync with tokens -> classify -> ConferenceCommand; and the
backfill job for full resyncs. Imports ``confsync`` only, never another stage."""
