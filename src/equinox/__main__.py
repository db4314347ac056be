"""`python -m equinox`."""

import sys

from equinox.cli.main import main

sys.exit(main())
