"""Online checks: rules that need the network (the Hugging Face Hub), kept apart from the pure rules.

Nothing here runs unless asked for; `offline=True` turns every check into an ON-001 note.
"""

from reconciler.online.hub import check_hub

__all__ = ["check_hub"]
