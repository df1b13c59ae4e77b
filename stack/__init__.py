"""The composition root: where confsync's stages are put together and run.

Start at ``root.Stack``: every part (store, transport, clients, channel manager, lag repair,
worker, backfill, applier) built from Settings. Then ``services`` builds what
``confsync serve ROLE`` runs from a Stack; ``cli/`` is the ``confsync`` command, whose
commands each take a Stack; ``local`` starts and supervises the whole stack on one machine
(``confsync local``) and ``demo`` tells the story ``confsync demo`` shows. Nothing imports
``stack``: not the stages, not the ``confsync`` kernel (tests/test_architecture.py).
"""
