"""Development scripts: the service provisioner (``scripts.provision``) and the distributed
topology (``scripts.topology``). Standard library only."""
