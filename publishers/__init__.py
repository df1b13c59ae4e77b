"""ConferenceCommand -> the conferencing API, with retries, idempotency and dead letters.
Imports ``confsync`` only, never another stage."""
