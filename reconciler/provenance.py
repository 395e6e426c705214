"""Gather the `Provenance` a plan's job inputs record (`reconciler.lineage`): the manifests' git
commit and the content digest of each local dataset they name. I/O at the edge: called by the
engine before planning; the planner only reads the value.

The commit is FTCTL_COMMIT_SHA (or the CI's GITHUB_SHA / CI_COMMIT_SHA) when set, else `git
rev-parse HEAD` of the manifests' repository, suffixed `-dirty` when the manifests given (files or
folders) differ from that commit (modified, staged or untracked), and `unknown` outside git. Data is
not judged by git: each local dataset's bytes are digested (sha256), so a file changed under the
same path reads as another dataset whatever git says.

A base model's revision (`model_revisions`, by the `name_or_path` job inputs name it by): a Hub
model's is the commit the Hub served its config.json from when the plan asked it (`HubFacts`;
unknown offline); a project model's is `files:<sha256>` over its config.json's bytes and the name
and size of every file in its folder (weights are not hashed: a model's GBs are not read for each
plan, and a weights file rewritten to the same size keeps the revision); a registry model's is its
first version's MLflow run (`mlflow-run:<id>`, from the registry's facts). Revisions are lineage:
they never enter a job's name.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence

from reconciler.facts import HubFacts, RegistryFacts
from reconciler.lineage import UNKNOWN, Provenance
from reconciler.manifests.loader import Manifest
from reconciler.models import Dataset, Model
from reconciler.safeio import ReadRoots, UnsafePathError

CI_COMMIT_VARIABLES = ("FTCTL_COMMIT_SHA", "GITHUB_SHA", "CI_COMMIT_SHA")
CHUNK = 1 << 20


def gather_provenance(manifests: Iterable[Manifest], *, paths: Sequence[str], root: str, roots: ReadRoots,
                      environ: Mapping[str, str], hub: HubFacts | None = None,
                      registry: RegistryFacts | None = None) -> Provenance:
    manifests = list(manifests)
    return Provenance(commit=manifests_commit(paths, root=root, environ=environ),
                      dataset_digests=dataset_digests(manifests, root=root, roots=roots),
                      model_revisions=model_revisions(manifests, root=root, roots=roots, hub=hub or HubFacts(),
                                                      registry=registry or RegistryFacts()))


def manifests_commit(paths: Sequence[str], *, root: str, environ: Mapping[str, str]) -> str:
    for name in CI_COMMIT_VARIABLES:
        if environ.get(name):
            return environ[name]
    head = _git(root, "rev-parse", "HEAD")
    if not head:
        return UNKNOWN
    changed = _git(root, "status", "--porcelain", "--", *(os.path.abspath(p) for p in paths or [root]))
    return f"{head}-dirty" if changed else head


def _git(folder: str, *args: str) -> str:
    """git's stdout, stripped; '' when git is missing, the folder is no repository, or it failed."""
    try:
        done = subprocess.run(["git", "-C", folder or ".", *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def dataset_digests(manifests: Iterable[Manifest], *, root: str, roots: ReadRoots) -> dict[str, str]:
    """sha256 of each local dataset file, by its location as the Studio stores it (relative to the
    project root inside it): the `name_or_path` of the job inputs that read it."""
    out: dict[str, str] = {}
    for m in manifests:
        res = m.resource
        if not isinstance(res, Dataset) or not res.spec.location or res.spec.type == "huggingface":
            continue
        found = file_digest(m.path(res.spec.location), roots)
        if found:
            out[m.stored_path(res.spec.location, root)] = found
    return out


def model_revisions(manifests: Iterable[Manifest], *, root: str, roots: ReadRoots, hub: HubFacts,
                    registry: RegistryFacts) -> dict[str, str]:
    """Each base model's revision, by the `name_or_path` its job inputs carry; a model whose revision
    is not known is left out (lineage then says `unknown`)."""
    out: dict[str, str] = {}
    for m in manifests:
        res = m.resource
        if not isinstance(res, Model):
            continue
        spec = res.spec
        if spec.type == "huggingface" and spec.huggingface_model_name:
            found = hub.model_revisions.get(spec.huggingface_model_name.strip(), "")
            key = spec.huggingface_model_name
        elif spec.type == "model_registry" and spec.cml_registered_model_id:
            fact = registry.models.get(spec.cml_registered_model_id.strip())
            run = spec.mlflow_run_id or (fact.run_id if fact else "")
            found, key = (f"mlflow-run:{run}" if run else ""), spec.cml_registered_model_id
        elif spec.location:
            key = m.stored_path(spec.location, root)
            found = folder_revision(m.path(spec.location), roots)
        else:
            continue
        if found:
            out[key] = found
    return out


def folder_revision(path: str, roots: ReadRoots) -> str:
    """`files:<sha256>` over a model folder's config.json bytes and each regular file's name and
    size (its top level, sorted); '' when the folder is not one inside the read roots."""
    try:
        real = roots.inspect_dir(path)
        entries = sorted((e.name, e.stat(follow_symlinks=False).st_size) for e in os.scandir(real)
                         if e.is_file(follow_symlinks=False))
    except (OSError, UnsafePathError):
        return ""
    digest = hashlib.sha256(file_digest(os.path.join(path, "config.json"), roots).encode())
    for name, size in entries:
        digest.update(f"\0{name}\0{size}".encode())
    return f"files:{digest.hexdigest()}"


def file_digest(path: str, roots: ReadRoots) -> str:
    """sha256 of a regular file inside the read roots, '' when it is not one (or cannot be read)."""
    try:
        real, _ = roots.inspect_file(path)
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (OSError, UnsafePathError):
        return ""
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
