"""``python -m cachetui`` runs the command line."""

from cachetui.cli import main

raise SystemExit(main())
