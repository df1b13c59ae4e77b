"""Google -> confsync: the watch-notification webhook, watch-channel lifecycle and the add-on's
create-conference API. Imports ``confsync`` only, never another stage."""
