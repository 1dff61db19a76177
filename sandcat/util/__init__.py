"""Small generic pieces with no knowledge of the domain (no sandcat import)."""
