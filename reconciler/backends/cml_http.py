"""A small HTTP client for the CML API v2: the only code in ftctl that speaks HTTP to CML.

Bearer auth, JSON bodies, pagination (`page_token` / `next_page_token`), and retries with
exponential backoff and jitter on 429, 502, 503, 504 and dropped connections, honouring
`Retry-After`. Permanent errors (400, 401, 403, 404, ...) raise `CMLError` naming the call that
failed. Connection settings come from `CDSW_API_URL`, `CDSW_APIV2_KEY` and `CDSW_PROJECT_ID` (or
are passed in). Standard library only: `cmlapi` is not on the package index. The clock, the sleep
and the random source are injected, so tests never wait on real time.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.backends import BackendError

TRANSIENT_STATUS = frozenset({429, 502, 503, 504})


class CMLError(BackendError):
    """A CML API call failed for good (or kept failing past the retries)."""

    def __init__(self, call: str, status: int, message: str, *, transient: bool = False) -> None:
        super().__init__(f"CML API {call} failed: {status or 'no response'}: {message}")
        self.call, self.status, self.transient = call, status, transient


@dataclass
class CMLClient:
    base_url: str  # scheme://host[:port]; the API lives under /api/v2
    api_key: str
    project_id: str
    timeout_s: float = 30.0
    max_attempts: int = 6
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    page_size: int = 100
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    calls: int = 0  # requests sent, retries included (for the benchmark)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **options: Any) -> CMLClient:
        missing = [k for k in ("CDSW_API_URL", "CDSW_APIV2_KEY", "CDSW_PROJECT_ID") if not environ.get(k)]
        if missing:
            raise CMLError("configure", 0, f"set {', '.join(missing)} (inside CML they are set for you)")
        parsed = urllib.parse.urlsplit(environ["CDSW_API_URL"])
        if environ.get("FTCTL_CML_REQUEST_TIMEOUT_S") and "timeout_s" not in options:
            options["timeout_s"] = float(environ["FTCTL_CML_REQUEST_TIMEOUT_S"])
        return cls(f"{parsed.scheme}://{parsed.netloc}", environ["CDSW_APIV2_KEY"], environ["CDSW_PROJECT_ID"], **options)

    # -- transport -------------------------------------------------------------------------------

    def request(self, call: str, method: str, path: str, *, body: Any = None, query: Mapping[str, Any] | None = None,
                retry: bool = True) -> Any:
        """One API call with retries; `call` names it in errors (e.g. `create_job`).

        `retry=False` for calls that create something: a transient failure may have created it all
        the same (the answer was lost), so it raises at once (`transient=True`) and the caller looks
        before trying again (see `backends.cml`)."""
        url = f"{self.base_url}/api/v2{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(1, self.max_attempts + 1):
            self.calls += 1
            try:
                return self._send(method, url, data)
            except urllib.error.HTTPError as exc:
                status, message, retry_after = exc.code, _message(exc), exc.headers.get("Retry-After")
                if status not in TRANSIENT_STATUS:
                    raise CMLError(call, status, message) from exc
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
                status, message, retry_after = 0, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}", None
            if not retry:
                raise CMLError(call, status, message, transient=True)
            if attempt == self.max_attempts:
                raise CMLError(call, status, f"{message} (gave up after {attempt} attempts)", transient=True)
            self.sleep(self.delay(attempt, retry_after))
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, data: bytes | None) -> Any:
        headers = {"authorization": f"Bearer {self.api_key}", "accept": "application/json"}
        if data is not None:
            headers["content-type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else {}

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After is a floor."""
        backoff = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * self.rng.random()
        try:
            floor = float(retry_after) if retry_after is not None else 0.0
        except ValueError:
            floor = 0.0
        return max(backoff, floor)

    def pages(self, call: str, path: str, key: str, *, search_filter: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, page by page."""
        token = None
        while True:
            query = {"page_size": self.page_size, "page_token": token,
                     "search_filter": json.dumps(search_filter) if search_filter else None}
            page = self.request(call, "GET", path, query=query)
            yield from page.get(key) or []
            token = page.get("next_page_token")
            if not token:
                return

    # -- calls -----------------------------------------------------------------------------------

    @property
    def _project(self) -> str:
        return f"/projects/{urllib.parse.quote(self.project_id)}"

    def list_jobs(self, *, name: str | None = None) -> list[dict[str, Any]]:
        jobs = self.pages("list_jobs", f"{self._project}/jobs", "jobs", search_filter={"name": name} if name else None)
        return [j for j in jobs if name is None or j.get("name") == name]  # a fuzzy server search is re-checked

    def create_job(self, body: dict[str, Any], *, retry: bool = True) -> dict[str, Any]:
        return dict(self.request("create_job", "POST", f"{self._project}/jobs", body={"project_id": self.project_id, **body},
                                 retry=retry))

    def create_job_run(self, job_id: str, *, environment: Mapping[str, str] | None = None, retry: bool = True) -> dict[str, Any]:
        body = {"project_id": self.project_id, "job_id": job_id, "environment": dict(environment or {})}
        return dict(self.request("create_job_run", "POST", f"{self._project}/jobs/{job_id}/runs", body=body, retry=retry))

    def list_job_runs(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.pages("list_job_runs", f"{self._project}/jobs/{job_id}/runs", "job_runs"))

    def get_job_run(self, job_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.request("get_job_run", "GET", f"{self._project}/jobs/{job_id}/runs/{run_id}"))

    def stop_job_run(self, job_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.request("stop_job_run", "POST", f"{self._project}/jobs/{job_id}/runs/{run_id}:stop", body={}))

    def list_models(self, *, name: str | None = None) -> list[dict[str, Any]]:
        models = self.pages("list_models", f"{self._project}/models", "models", search_filter={"name": name} if name else None)
        return [m for m in models if name is None or m.get("name") == name]

    def create_model(self, body: dict[str, Any], *, retry: bool = True) -> dict[str, Any]:
        return dict(self.request("create_model", "POST", f"{self._project}/models", body={"project_id": self.project_id, **body},
                                 retry=retry))

    def list_model_builds(self, model_id: str) -> list[dict[str, Any]]:
        return list(self.pages("list_model_builds", f"{self._project}/models/{model_id}/builds", "model_builds"))

    def create_model_build(self, model_id: str, body: dict[str, Any], *, retry: bool = True) -> dict[str, Any]:
        full = {"project_id": self.project_id, "model_id": model_id, **body}
        return dict(self.request("create_model_build", "POST", f"{self._project}/models/{model_id}/builds", body=full, retry=retry))

    def list_model_deployments(self, model_id: str, build_id: str) -> list[dict[str, Any]]:
        path = f"{self._project}/models/{model_id}/builds/{build_id}/deployments"
        return list(self.pages("list_model_deployments", path, "model_deployments"))

    def get_registered_model(self, model_id: str) -> dict[str, Any]:
        return dict(self.request("get_registered_model", "GET", f"/registry/models/{urllib.parse.quote(model_id)}"))


def _message(exc: urllib.error.HTTPError) -> str:
    """The server's message: JSON `{code, message}` or the start of a plain-text body."""
    try:
        raw = exc.read().decode("utf-8", "replace")
    except Exception:  # the body could not be read: the status says enough
        return exc.reason or ""
    try:
        value = json.loads(raw)
        return str(value.get("message") or raw) if isinstance(value, dict) else raw[:200]
    except ValueError:
        return " ".join(raw.split())[:200] or str(exc.reason)
