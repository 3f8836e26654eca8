"""``python -m transit.cli``: the ``transit`` command."""

import sys

from transit.cli import main

sys.exit(main())
