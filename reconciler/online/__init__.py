"""Online checks and facts: what needs the network (the Hugging Face Hub), kept apart from the pure rules.

Nothing here runs unless asked for; `offline=True` turns every check into an ON-001 note and
gathers no facts. The only package of ftctl that imports `huggingface_hub`, and only inside the
functions that call it, so the CLI starts fast.
"""

from reconciler.online.hub import check_hub
from reconciler.online.hubinfo import gather_hub_facts

__all__ = ["check_hub", "gather_hub_facts"]
