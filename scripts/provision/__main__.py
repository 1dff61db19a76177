"""``python -m scripts.provision``: the same command line as ``scripts/services.py``."""

import sys

from .cli import main

sys.exit(main())
