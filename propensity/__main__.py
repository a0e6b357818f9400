"""``python -m propensity`` runs the command-line interface (the same as the ``propensity`` command)."""

import sys

from propensity.cli import main

sys.exit(main())
