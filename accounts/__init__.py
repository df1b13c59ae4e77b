"""People and their grants: the token vault (``accounts.vault``) and the grants kept with it
(``accounts.grants``). The connect flow builds on these. Imports ``confsync`` only, never
another stage."""
