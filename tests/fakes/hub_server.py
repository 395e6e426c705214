"""A fake Hugging Face Hub on loopback: the endpoints huggingface_hub calls for repo info and file
downloads, nothing more.

Served (`{type}` is `models` or `datasets`; `{repo_id}` is `name` or `org/name`):

- GET `/api/{type}/{repo_id}` and `/api/{type}/{repo_id}/revision/{rev}`: what `HfApi.model_info`
  and `HfApi.dataset_info` call. 200 with the Hub's JSON (id, sha, private, gated, siblings,
  cardData...; a dataset's card holds `dataset_info.features`, its info a `description`). Query
  parameters such as `expand` are ignored: the whole info is always sent.
- GET `/api/{type}/{repo_id}/auth-check`: what `HfApi.auth_check` calls; 200 when the caller may read.
- HEAD/GET `/{repo_id}/resolve/{rev}/{file}` (datasets: `/datasets/{repo_id}/resolve/...`): what
  `hf_hub_url` points at, so what `hf_hub_download` asks (HEAD for the metadata, then GET). Like the
  Hub for a file not in LFS, a relative 307 to `/api/resolve-cache/{type}/{repo_id}/{sha}/{file}`
  carrying `X-Repo-Commit`, `X-Linked-Etag` and `X-Linked-Size`; that answers 200 with the file,
  its git blob id as `ETag`, `X-Repo-Commit` and `Content-Length`. `{rev}` is `main` or the repo's
  sha. A file not in the repo is 404 `EntryNotFound`, another revision 404 `RevisionNotFound`.

It answers the way the real Hub does, so huggingface_hub's `hf_raise_for_status` raises the same
exceptions: a missing repo, or a private one without its token, is 401 (anonymous) or 404
(authenticated) with `X-Error-Code: RepoNotFound`; a gated repo's info is public (200, `gated:
"manual"`) but its auth-check and its files are 401 (anonymous) or 403 (wrong token) with
`X-Error-Code: GatedRepo`; a bearer token the Hub does not know is 401 `Invalid credentials in
Authorization header`. `fail_next(n, status=503)` makes the next n requests fail with a server
error. Every request is recorded in `requests` as (method, path, authorization header present).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

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
    files: list[str] = field(default_factory=list)  # the repo's files (`siblings`); all downloadable
    card_data: dict[str, Any] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)  # file -> bytes (a file not here is empty)
    description: str | None = None  # a dataset's `description` in its info (default: a sentence)

    @property
    def sha(self) -> str:
        return hashlib.sha1(f"{self.repo_type}/{self.repo_id}".encode()).hexdigest()

    def content(self, name: str) -> bytes | None:
        """The file's bytes, None when the repo has no such file."""
        if name not in self.files and name not in self.contents:
            return None
        return self.contents.get(name, b"")

    def info(self) -> dict[str, Any]:
        sha = self.sha
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
                "config": self._config_summary(),
                "spaces": [],
                "widgetData": [{"text": "Hello"}],
            }
        else:
            description = f"The {self.repo_id} dataset." if self.description is None else self.description
            body |= {"description": description, "citation": "", "paperswithcode_id": None}
        return body

    def _config_summary(self) -> dict[str, Any]:
        """What the Hub shows of a model's config.json in its info."""
        try:
            config = json.loads(self.content("config.json") or b"{}")
        except ValueError:
            return {}
        if not isinstance(config, dict):
            return {}
        return {k: config[k] for k in ("architectures", "model_type") if k in config}


_MODEL_FILES = [".gitattributes", "README.md", "config.json", "model.safetensors", "tokenizer.json"]
_DATASET_FILES = [".gitattributes", "README.md", "data/train-00000-of-00001.parquet"]
_MODEL_CONFIG = {"architectures": ["BloomForCausalLM"], "model_type": "bloom", "vocab_size": 250880}
_DATASET_CARD = {
    "license": "mit",
    "task_categories": ["text-generation"],
    "dataset_info": {
        "features": [{"name": "instruction", "dtype": "string"}, {"name": "response", "dtype": "string"}],
        "splits": [{"name": "train", "num_bytes": 1000, "num_examples": 10}],
        "download_size": 1000,
        "dataset_size": 1000,
    },
    "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
}


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
    def add_model(self, repo_id: str, *, config: dict[str, Any] | None = None, **options: Any) -> FakeRepo:
        """A model repo; `config` is its config.json (default: a Bloom one's), `files` its file list."""
        options.setdefault("files", list(_MODEL_FILES))
        options.setdefault("card_data", {"license": "apache-2.0", "tags": ["text-generation"]})
        contents = options.setdefault("contents", {})
        if "config.json" in options["files"] and "config.json" not in contents:
            contents["config.json"] = json.dumps(_MODEL_CONFIG if config is None else config, indent=2).encode()
        return self._add(FakeRepo("model", repo_id, **options))

    def add_dataset(self, repo_id: str, **options: Any) -> FakeRepo:
        """A dataset repo; its default card has two features (instruction, response) in `dataset_info`."""
        options.setdefault("files", list(_DATASET_FILES))
        options.setdefault("card_data", json.loads(json.dumps(_DATASET_CARD)))
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
        if parsed is None or (method != "GET" and parsed[2] not in ("resolve", "resolve-cache")):
            return 404, {}, {"error": "Sorry, we can't find the page you are looking for."}
        repo_type, repo_id, action, rev, filename = parsed
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and token != repo.token):
            status = 404 if token else 401
            return _error(status, "RepoNotFound", "Repository not found")
        if action in ("resolve", "resolve-cache"):
            return self._resolve(repo, token, action, rev, filename)
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

    def _resolve(
        self, repo: FakeRepo, token: str | None, action: str, rev: str, filename: str
    ) -> tuple[int, dict[str, str], Any]:
        if repo.gated and token != repo.token:
            kind = "model" if repo.repo_type == "model" else "dataset"
            if token is None:
                message = f"Access to {kind} {repo.repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in."
                return _error(401, "GatedRepo", message)
            message = f"Access to {kind} {repo.repo_id} is restricted and you are not in the authorized list."
            return _error(403, "GatedRepo", message)
        if rev not in ("main", repo.sha):
            return _error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        content = repo.content(filename)
        commit = {"X-Repo-Commit": repo.sha}
        if content is None:
            status, headers, body = _error(404, "EntryNotFound", "Entry not found")
            return status, headers | commit, body
        etag = '"' + hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest() + '"'
        if action == "resolve":
            target = f"/api/resolve-cache/{repo.repo_type}s/{repo.repo_id}/{repo.sha}/{quote(filename)}"
            headers = commit | {
                "Location": target,
                "X-Linked-Etag": etag,
                "X-Linked-Size": str(len(content)),
                "Content-Type": "text/plain; charset=utf-8",
            }
            return 307, headers, f"Temporary Redirect. Redirecting to {target}".encode()
        return 200, commit | {"ETag": etag, "Content-Type": _content_type(filename)}, content


def _error(status: int, code: str | None, message: str) -> tuple[int, dict[str, str], Any]:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return status, headers, {"error": message}


def _parse(path: str) -> tuple[str, str, str, str, str] | None:
    """What a path asks: (repo type, repo id, action, revision, file).

    `/api/models/org/name[/revision/rev|/auth-check]` -> ("model", "org/name", "info"|"auth-check", "", "");
    `[/datasets]/org/name/resolve/rev/file` -> (..., "resolve", rev, file);
    `/api/resolve-cache/models/org/name/sha/file` -> (..., "resolve-cache", sha, file).
    """
    if path.startswith("/api/resolve-cache/"):
        repo_type, _, rest = path.removeprefix("/api/resolve-cache/").partition("/")
        parts = rest.split("/")
        # the repo id is 1 or 2 segments, then a 40-hex sha: find the sha to split
        for n in (1, 2):
            if len(parts) > n + 1 and len(parts[n]) == 40:
                return _repo(repo_type, "/".join(parts[:n]), "resolve-cache", parts[n], "/".join(parts[n + 1 :]))
        return None
    if not path.startswith("/api/"):
        repo, sep, rest = path.removeprefix("/").partition("/resolve/")
        rev, _, filename = rest.partition("/")
        if not sep or not rev or not filename:
            return None
        repo_type = "datasets" if repo.startswith("datasets/") else "models"
        return _repo(repo_type, repo.removeprefix("datasets/"), "resolve", unquote(rev), filename)
    repo_type, _, rest = path.removeprefix("/api/").partition("/")
    rest = unquote(rest)
    action = "info"
    if rest.endswith("/auth-check"):
        rest, action = rest[: -len("/auth-check")], "auth-check"
    elif "/revision/" in rest:
        rest = rest.split("/revision/", 1)[0]
    return _repo(repo_type, rest, action, "", "")


def _repo(
    repo_type: str, repo_id: str, action: str, rev: str, filename: str
) -> tuple[str, str, str, str, str] | None:
    repo_id = unquote(repo_id)
    parts = repo_id.split("/")
    if repo_type not in ("models", "datasets") or not repo_id or len(parts) > 2 or not all(parts):
        return None
    return repo_type[:-1], repo_id, action, rev, unquote(filename)


def _content_type(filename: str) -> str:
    if filename.endswith(".json"):
        return "application/json; charset=utf-8"
    if filename.endswith((".md", ".txt", ".gitattributes")):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


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
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        if "Content-Type" not in headers:
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
