"""``python -m taskfate.client`` runs the ``taskfate`` command line."""

import sys

from taskfate.client.cli import main

sys.exit(main())
