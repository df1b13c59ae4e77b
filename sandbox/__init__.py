"""Local stand-ins, over real HTTP, for the services confsync cannot reach from here: a Google
Calendar API v3 sandbox and a conferencing API sandbox. Imports ``confsync`` only."""
