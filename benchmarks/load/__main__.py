"""``python -m benchmarks.load``: the load generator's command line."""

import sys

from benchmarks.load.cli import main

sys.exit(main())
