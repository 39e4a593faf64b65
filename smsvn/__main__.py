"""``python -m smsvn``: the same as the ``smsvn`` command."""

from smsvn.cli import main

raise SystemExit(main())
