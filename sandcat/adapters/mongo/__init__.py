"""MongoDB (wire-compatible FerretDB) adapters of the distributed mode."""
