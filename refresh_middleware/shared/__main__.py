"""``python -m refresh_middleware.shared token|seed|status``: the credential helper command."""

from refresh_middleware._shared._cli import main

raise SystemExit(main())
