"""S3 / MinIO adapters (miniopy-async)."""
