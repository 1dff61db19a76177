#!/usr/bin/env python3
"""Install, start and stop local test instances of Sandcat's backing services.

``python scripts/services.py install|start|status|stop [NAMES...] --run-dir DIR``: the
command line of the ``scripts.provision`` package (standard library only, one module per
service; its docstring has the details).
"""

import sys
from pathlib import Path

# Run as a file, Python puts scripts/ first on the path; the package is imported from the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.provision.cli import main

if __name__ == "__main__":
    sys.exit(main())
