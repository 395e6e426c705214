"""Views: render diagnostics (and later plans) for people and machines. Pure: values in, text out."""

from reconciler.views.diagnostics import FORMATS, render_diagnostics

__all__ = ["FORMATS", "render_diagnostics"]
