"""The composition of confsync's stages into runnable services and a local stack.

``stack`` is the one package that imports every stage (ingest, processors, publishers) and
the sandboxes' command lines: ``services`` builds what ``confsync serve ROLE`` runs;
``local`` starts and supervises the whole stack on one machine (``confsync local``);
``demo`` tells the story ``confsync demo`` shows. No stage imports it, and the ``confsync``
kernel reaches it only from ``cli.py`` (tests/test_architecture.py).
"""
