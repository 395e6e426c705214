"""The fake CML runtime's `cml` package: only `cml.workers_v1` (see the folder's README.md)."""
