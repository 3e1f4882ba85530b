"""``python -m taskfate`` runs the ``taskfate`` command line."""

import sys

from taskfate.client.cli import main

sys.exit(main())
