"""Views: render diagnostics and plans for people and machines. Pure: values in, text out."""

from reconciler.views.diagnostics import FORMATS, render_diagnostics
from reconciler.views.plan import chain_text, job_lines, render_plan, store_label, summary_line

__all__ = ["FORMATS", "chain_text", "job_lines", "render_diagnostics", "render_plan", "store_label", "summary_line"]
