"""Install, start and stop local test instances of Sandcat's backing services.

Standard library only (Python 3.11+), so CI can run it before any project dependency is
installed. Everything that is downloaded or built is cached under ``~/.cache/sandcat``
(override with ``SANDCAT_CACHE``), never in the repository. One module per service
(``postgres``, ``redis``, ``kafka``, ``mongo``, ``s3``), what they share in ``base``, the
registry and start/stop in ``lifecycle``, the command line in ``cli`` (run as
``python scripts/services.py`` or ``python -m scripts.provision``).

``SANDCAT_MONGO_HANDLER=pg`` runs FerretDB on its PostgreSQL handler (a database on this
run's ``postgres`` service) instead of the default ``sqlite``.

    python scripts/services.py install [NAMES...]
    python scripts/services.py start [NAMES...] --run-dir DIR [--port NAME=PORT ...]
    python scripts/services.py status --run-dir DIR
    python scripts/services.py stop [NAMES...] --run-dir DIR

``stop NAMES`` stops only those services and keeps their data and ports; ``start NAMES``
on the same run dir then restarts them as they were (the fault tests use this).
``start`` installs what is missing, starts each service on a free (or given)
loopback port with its data under DIR, waits until it really answers, and
writes ``DIR/services.json`` and ``DIR/services.env``.  Each service logs to
``DIR/<name>.log`` and has its pid in ``DIR/<name>.pid``.  A service that cannot
be installed or started is a hard failure (exit code 1) naming the service
and its log file.

Tests, benchmarks and ``scripts/topology.py`` import it one way::

    from scripts import provision
    info = provision.start_services(["postgres", "redis"], run_dir)
    ...
    provision.stop_services(run_dir)
"""

from .base import ALL_SERVICES, ServiceError, pid_is_ours, proc_alive, read_pidfile
from .lifecycle import install_services, start_services, status_services, stop_services

__all__ = [
    "ALL_SERVICES",
    "ServiceError",
    "install_services",
    "pid_is_ours",
    "proc_alive",
    "read_pidfile",
    "start_services",
    "status_services",
    "stop_services",
]
