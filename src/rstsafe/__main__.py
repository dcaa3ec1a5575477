"""``python -m rstsafe``: the same command line as the ``rstsafe`` script."""

from rstsafe._cli import main

raise SystemExit(main())
