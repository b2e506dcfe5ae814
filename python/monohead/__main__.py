"""``python -m monohead <command>``: same as the ``monohead`` script."""

from .cli import main

raise SystemExit(main())
