"""Manifests: YAML files and folders in, `Manifest` values and load diagnostics out."""

from reconciler.manifests.loader import LoadResult, Manifest, SourceTexts, load_paths, resolve_positions

__all__ = ["LoadResult", "Manifest", "SourceTexts", "load_paths", "resolve_positions"]
