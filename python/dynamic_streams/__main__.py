"""``python -m dynamic_streams``: the ``dynamic-streams`` command line."""

from dynamic_streams.cli import main

raise SystemExit(main())
