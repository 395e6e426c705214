"""ftctl: a declarative, GitOps-style reconciler for Cloudera's Fine Tuning Studio.

The package is layered: a pure core (models, rules, graph, plan) that takes values and returns
values, with I/O at the edges (manifests loader, store, backends, cli). import-linter enforces
the layers (see pyproject.toml).
"""

__version__ = "0.1.0"
