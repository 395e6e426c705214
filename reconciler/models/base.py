"""The manifest envelope and the value types every kind shares.

A manifest is `apiVersion / kind / metadata / spec`. Models are pydantic v2, `extra="forbid"`
(a typo is an error, never silently dropped) and frozen. Fields that a Studio rule requires are
optional here on purpose: the rule reports them under the Studio's own code (e.g. PR-004), not as
a generic schema error. References name another manifest by `metadata.name`, or a store row that
ftctl does not manage by `{id: UUID}`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

API_VERSION = "ftctl/v1"

# The metadata annotations ftctl reads. Any other key under the ftctl.io/ prefix is a typo (NM-006).
ANNOTATION_PREFIX = "ftctl.io/"
PROTECTED_ANNOTATION = "ftctl.io/protected"  # the object is never deleted or replaced by an apply
STORE_ID_ANNOTATION = "ftctl.io/store-id"  # the existing Studio row a manifest takes over (`ftctl import`)
ANNOTATIONS = (PROTECTED_ANNOTATION, STORE_ID_ANNOTATION)

# Upper bounds of counts no job can ask for: far above any real machine or CML workload (so never in a
# real project's way), low enough that a slip of the keyboard (memory: 160000) is an error at validate.
MAX_CPU, MAX_MEMORY_GB, MAX_GPU, MAX_WORKERS = 1024, 65536, 64, 1024
MAX_EPOCHS, MAX_RETRIES = 100_000, 100


class Strict(BaseModel):
    """Base for every manifest model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class IdRef(Strict):
    """A reference to a store row by its id, for objects ftctl does not manage."""

    id: str = Field(min_length=1, description="The Studio store id (a UUID) of the referenced row.")


Ref = str | IdRef
"""A reference: the `metadata.name` of another manifest, or `{id: UUID}` of a store row."""

ConfigSource = str | IdRef | dict[str, Any]
"""A config used by a job: a Config manifest's name, a store id, or the config body inline."""


class Metadata(Strict):
    name: str | None = Field(
        default=None, description="Unique per kind; the stable key ftctl tracks the object by."
    )
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Resource(Strict):
    """The envelope shared by all kinds; each kind narrows `kind` and `spec`."""

    KIND: ClassVar[str] = ""
    # How a change reaches the store, declared beside each model and read by the planner (through
    # the kind's binding, `reconciler.kinds`, which also says which Studio columns cannot change in
    # place): RERUN non-empty means any change re-runs work (its consequence code, `plan.Consequence`).
    RERUN: ClassVar[str] = ""

    apiVersion: str = API_VERSION
    kind: str
    metadata: Metadata
    spec: Any

    @property
    def name(self) -> str:
        return self.metadata.name or ""

