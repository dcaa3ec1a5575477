"""``python -m contract``: see :mod:`contract.run`."""

from __future__ import annotations

import sys

from contract.run import main

sys.exit(main())
