"""A fake Hugging Face Hub on loopback: the repo-info endpoints huggingface_hub calls, nothing more.

Served (GET only; `{type}` is `models` or `datasets`; `{repo_id}` is `name` or `org/name`):

- `/api/{type}/{repo_id}` and `/api/{type}/{repo_id}/revision/{rev}`: what `HfApi.model_info` and
  `HfApi.dataset_info` call. 200 with the Hub's JSON (id, sha, private, gated, siblings, cardData...).
- `/api/{type}/{repo_id}/auth-check`: what `HfApi.auth_check` calls; 200 when the caller may read.

It answers the way the real Hub does, so huggingface_hub's `hf_raise_for_status` raises the same
exceptions: a missing repo, or a private one without its token, is 401 (anonymous) or 404
(authenticated) with `X-Error-Code: RepoNotFound`; a gated repo's info is public (200, `gated:
"manual"`) but its auth-check is 401 (anonymous) or 403 (wrong token) with `X-Error-Code: GatedRepo`;
a bearer token the Hub does not know is 401 `Invalid credentials in Authorization header`.
`fail_next(n, status=503)` makes the next n requests fail with a server error. Every request is
recorded in `requests` as (method, path, authorization header present).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

_STAMP = "2024-05-01T12:00:00.000Z"


class Request(NamedTuple):
    method: str
    path: str  # without the query string
    authorized: bool  # an Authorization header was sent


@dataclass
class FakeRepo:
    repo_type: str  # "model" | "dataset"
    repo_id: str
    private: bool = False
    gated: bool = False
    token: str | None = None  # the token that may read it (private or gated repos)
    files: list[str] = field(default_factory=list)
    card_data: dict[str, Any] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        sha = hashlib.sha1(f"{self.repo_type}/{self.repo_id}".encode()).hexdigest()
        author = self.repo_id.split("/")[0] if "/" in self.repo_id else None
        body: dict[str, Any] = {
            "_id": sha[:24],
            "id": self.repo_id,
            "author": author,
            "sha": sha,
            "lastModified": _STAMP,
            "createdAt": _STAMP,
            "private": self.private,
            "gated": "manual" if self.gated else False,
            "disabled": False,
            "downloads": 1234,
            "likes": 5,
            "tags": list(self.card_data.get("tags", [])),
            "cardData": self.card_data,
            "siblings": [{"rfilename": name} for name in self.files],
            "usedStorage": 1_000_000,
        }
        if self.repo_type == "model":
            body |= {
                "modelId": self.repo_id,
                "library_name": "transformers",
                "pipeline_tag": "text-generation",
                "config": {"architectures": ["BloomForCausalLM"], "model_type": "bloom"},
                "spaces": [],
                "widgetData": [{"text": "Hello"}],
            }
        else:
            body |= {"description": f"The {self.repo_id} dataset.", "citation": "", "paperswithcode_id": None}
        return body


_MODEL_FILES = [".gitattributes", "README.md", "config.json", "model.safetensors", "tokenizer.json"]
_DATASET_FILES = [".gitattributes", "README.md", "data/train-00000-of-00001.parquet"]


class FakeHub:
    """`with FakeHub() as hub:` serves on `hub.url` until the block ends."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], FakeRepo] = {}
        self.requests: list[Request] = []
        self.tokens: set[str] = set()  # valid tokens beyond the repos' own (see add_token)
        self._fail: list[int] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- configuration -----------------------------------------------------------------------
    def add_model(self, repo_id: str, **options: Any) -> FakeRepo:
        options.setdefault("files", list(_MODEL_FILES))
        options.setdefault("card_data", {"license": "apache-2.0", "tags": ["text-generation"]})
        return self._add(FakeRepo("model", repo_id, **options))

    def add_dataset(self, repo_id: str, **options: Any) -> FakeRepo:
        options.setdefault("files", list(_DATASET_FILES))
        options.setdefault("card_data", {"license": "mit", "task_categories": ["text-generation"]})
        return self._add(FakeRepo("dataset", repo_id, **options))

    def _add(self, repo: FakeRepo) -> FakeRepo:
        if (repo.private or repo.gated) and not repo.token:
            raise ValueError("a private or gated repo needs the token that may read it")
        with self._lock:
            self.repos[(repo.repo_type, repo.repo_id)] = repo
        return repo

    def add_token(self, token: str) -> None:
        """A token the Hub knows that reads only public repos (a gated repo then answers 403)."""
        with self._lock:
            self.tokens.add(token)

    def fail_next(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._fail.extend([status] * n)

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "use FakeHub as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        server = _Server(("127.0.0.1", 0), Handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- request handling --------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, auth: str | None) -> tuple[int, dict[str, str], Any]:
        path = urlsplit(raw_path).path
        with self._lock:
            self.requests.append(Request(method, path, auth is not None))
            failure = self._fail.pop(0) if self._fail else None
        if failure is not None:
            return (
                failure,
                {},
                {"error": "Internal Error - We're working hard to fix this as soon as possible!"},
            )
        token = auth.removeprefix("Bearer ").strip() if auth and auth.startswith("Bearer ") else None
        if auth is not None and token not in self.tokens | {r.token for r in self.repos.values() if r.token}:
            return _error(401, None, "Invalid credentials in Authorization header")
        parsed = _parse(path)
        if method != "GET" or parsed is None:
            return 404, {}, {"error": "Sorry, we can't find the page you are looking for."}
        repo_type, repo_id, action = parsed
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and token != repo.token):
            status = 404 if token else 401
            return _error(status, "RepoNotFound", "Repository not found")
        if action == "auth-check" and repo.gated and token != repo.token:
            kind = "model" if repo_type == "model" else "dataset"
            if token is None:
                message = f"Access to {kind} {repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in."
                return _error(401, "GatedRepo", message)
            message = f"Access to {kind} {repo_id} is restricted and you are not in the authorized list."
            return _error(403, "GatedRepo", message)
        if action == "auth-check":
            return 200, {}, {}
        return 200, {}, repo.info()


def _error(status: int, code: str | None, message: str) -> tuple[int, dict[str, str], Any]:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return status, headers, {"error": message}


def _parse(path: str) -> tuple[str, str, str] | None:
    """`/api/models/org/name[/revision/rev|/auth-check]` -> ("model", "org/name", "info"|"auth-check")."""
    repo_type, _, rest = path.removeprefix("/api/").partition("/")
    if not path.startswith("/api/") or repo_type not in ("models", "datasets"):
        return None
    repo_type, rest = repo_type[:-1], unquote(rest)
    action = "info"
    if rest.endswith("/auth-check"):
        rest, action = rest[: -len("/auth-check")], "auth-check"
    elif "/revision/" in rest:
        rest = rest.split("/revision/", 1)[0]
    parts = rest.split("/")
    if not rest or len(parts) > 2 or not all(parts):
        return None
    return repo_type, rest, action


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops concurrent connects (a 1 s SYN retry each)
    daemon_threads = True
    block_on_close = False  # never wait for a client's open connection on exit


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    server_version = "FakeHub/1.0"

    def do_GET(self) -> None:
        self._answer("GET")

    def do_HEAD(self) -> None:
        self._answer("HEAD")

    def _answer(self, method: str) -> None:
        status, headers, body = self.fake.handle(method, self.path, self.headers.get("Authorization"))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-Id", "Root=1-fake")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass
