"""The editor schema in a real language server: yaml-language-server (installed from npm into
.tools/ by `make test`) driven over stdio with LSP, as VS Code's YAML extension and Neovim drive it.

The schemas must resolve offline: the server's HTTP goes to a dead proxy and the schema store is
off, so a reference that leads to the web is a load error and every assertion below fails.
Documents are opened from memory under the checkout's paths; nothing is written into it.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / ".tools" / "node_modules" / ".bin" / "yaml-language-server"
EXAMPLES = REPO / "specs" / "examples"
SCHEMAS = REPO / "schemas"  # the committed schemas the README's editor set-up points at
MANIFEST_SCHEMA = SCHEMAS / "manifest.schema.json"
WAIT_S = 60  # the longest the harness waits for one answer before it fails the test
DEAD_PROXY = "http://127.0.0.1:9"  # discard port: any request for the web fails at once


# The workspace settings an editor sends: the README's mapping (.vscode/settings.json, Neovim's
# yamlls settings) and no web.
SETTINGS: dict[str, Any] = {
    "yaml": {
        "schemas": {"./schemas/manifest.schema.json": ["specs/**/*.yaml"]},
        "schemaStore": {"enable": False},
        "validate": True, "completion": True, "hover": True,
    },
    "http": {"proxy": DEAD_PROXY, "proxyStrictSSL": False},
}


class LanguageServer:
    """A minimal LSP client over the server's stdin/stdout (Content-Length framed JSON-RPC)."""

    def __init__(self, process: subprocess.Popen[bytes], config: dict[str, Any]) -> None:
        self.process = process
        self.config = config
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.diagnostics: dict[str, list[dict[str, Any]]] = {}
        self.next_id = 0
        assert process.stdout is not None
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        while True:
            headers: dict[str, str] = {}
            while (line := stream.readline().decode("ascii").strip()):
                name, _, value = line.partition(":")
                headers[name.lower()] = value.strip()
            if not headers:
                return  # the server has gone
            self.inbox.put(json.loads(stream.read(int(headers["content-length"]))))

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.process.stdin.flush()

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: dict[str, Any]) -> Any:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        reply = self._until(lambda m: m.get("id") == self.next_id and "method" not in m, what=method)
        assert "error" not in reply, reply["error"]
        return reply.get("result")


    def _until(self, done: Any, *, what: str) -> dict[str, Any]:
        while True:
            try:
                message = self.inbox.get(timeout=WAIT_S)
            except queue.Empty:
                pytest.fail(f"yaml-language-server sent no {what} within {WAIT_S} s", pytrace=False)
            self._answer(message)
            if done(message):
                return message

    def _answer(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method == "textDocument/publishDiagnostics":
            self.diagnostics[message["params"]["uri"]] = message["params"]["diagnostics"]
        elif method is not None and "id" in message:  # a request of the server's own
            items = message.get("params", {}).get("items", [])
            result = [self._section(i.get("section")) for i in items] if method == "workspace/configuration" else None
            self.send({"id": message["id"], "result": result})

    def _section(self, section: str | None) -> Any:
        value: Any = self.config
        for part in (section or "").split(".") if section else []:
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def open(self, path: Path, text: str) -> tuple[str, list[dict[str, Any]]]:
        """Give the server a document's text, as an editor opens a buffer (nothing is read from or
        written to path), and wait for its diagnostics: then the server has parsed it against the schema."""
        uri = path.as_uri()
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}})
        self._until(lambda _: uri in self.diagnostics, what=f"diagnostics of {uri}")
        return uri, self.diagnostics[uri]

    def completion(self, uri: str, line: int, character: int) -> list[str]:
        result = self.request("textDocument/completion", {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}})
        items = result["items"] if isinstance(result, dict) else result or []
        return sorted(item["label"] for item in items)

    def hover(self, uri: str, line: int, character: int) -> str:
        result = self.request("textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}})
        contents = (result or {}).get("contents", "")
        return contents.get("value", "") if isinstance(contents, dict) else str(contents)


@pytest.fixture
def server() -> Iterator[LanguageServer]:
    """A fresh server per test, initialized as an editor initializes it on a workspace at the checkout."""
    if not SERVER.exists():
        pytest.skip("yaml-language-server is not installed: `make test` installs it from npm into .tools/ "
                    "(npm install --prefix .tools yaml-language-server)")
    env = {**os.environ, "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY, "NO_PROXY": ""}
    process = subprocess.Popen([str(SERVER), "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env)
    server = LanguageServer(process, SETTINGS)
    try:
        server.request("initialize", {"processId": os.getpid(), "rootUri": REPO.as_uri(), "capabilities": {},
                                      "workspaceFolders": [{"uri": REPO.as_uri(), "name": "ftctl"}]})
        server.notify("initialized", {})
        server.notify("workspace/didChangeConfiguration", {"settings": SETTINGS})
        yield server
    finally:
        process.kill()
        process.wait(timeout=WAIT_S)


def body_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / "config-bodies" / f"{name}.schema.json").read_text(encoding="utf-8"))


def spec_keys(kind: str) -> set[str]:
    manifest = json.loads(MANIFEST_SCHEMA.read_text(encoding="utf-8"))
    return set(manifest["$defs"][f"{kind}Spec"]["properties"])


def where(text: str, token: str) -> tuple[int, int]:
    """(line, character) of the first occurrence of token, as LSP counts them."""
    before = text[: text.index(token)]
    return before.count("\n"), len(before) - (before.rfind("\n") + 1)


def test_every_example_loads_its_schema_offline_and_is_clean(server: LanguageServer) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        assert server.open(path, path.read_text(encoding="utf-8"))[1] == [], path.name


def test_completion_offers_the_missing_finetuning_job_keys(server: LanguageServer) -> None:
    path = EXAMPLES / "finetuning.yaml"
    text = path.read_text(encoding="utf-8")
    uri, _ = server.open(path, text)
    present = set(next(yaml.safe_load_all(text))["spec"])
    line, character = where(text, "base_model:")
    assert set(server.completion(uri, line, character)) == spec_keys("FineTuningJob") - present | {"base_model"}


def test_completion_inside_an_inline_lora_config_offers_the_lora_keys(server: LanguageServer) -> None:
    path = EXAMPLES / "finetuning.yaml"
    text = re.sub(r"lora_config: lora-r16.*", "lora_config:\n    r: 16\n    ", path.read_text(encoding="utf-8"), count=1)
    uri, _ = server.open(path, text)
    line, _ = where(text, "r: 16\n")
    labels = set(server.completion(uri, line + 1, 4))  # on the empty line under r
    assert labels == set(body_schema("lora_config")["properties"]) - {"r"}
    assert {"lora_alpha", "lora_dropout", "target_modules", "use_dora"} <= labels


@pytest.mark.parametrize(("file", "key", "body"), [
    ("finetuning.yaml", "num_train_epochs", "training_arguments"),  # inline in a FineTuningJob
    ("config.yaml", "lora_alpha", "lora_config"),  # a Config of type lora_config
])
def test_hover_shows_the_library_help_text(server: LanguageServer, file: str, key: str, body: str) -> None:
    path = EXAMPLES / file
    text = path.read_text(encoding="utf-8")
    uri, _ = server.open(path, text)
    line, character = where(text, key)
    help_text = body_schema(body)["properties"][key]["description"]
    assert help_text in server.hover(uri, line, character + 1)


def test_typos_are_flagged_where_they_are(server: LanguageServer) -> None:
    # Outside the mapped specs/ folder: the README's modeline, one per document, associates the schema.
    path = REPO / "manifests" / "typos.yaml"
    modeline = f"# yaml-language-server: $schema={os.path.relpath(MANIFEST_SCHEMA, path.parent)}\n"
    text = modeline + """apiVersion: ftctl/v1
kind: FineTuningJob
metadata:
  name: typo-job
spec:
  base_model: bloom-560m
  dataset: sql-create-context
  adaptor_name: bloom-sql-v2
  lora_config: {r: 16, lora_alpah: 32}
  training_arguments:
    num_train_epoch: 2
    learning_rate: fast
  resources: {cpu: 4, memry: 32}
---
""" + modeline + """apiVersion: ftctl/v1
kind: Config
metadata:
  name: lora-typo
spec:
  type: lora_config
  config: {r: 16, lora_dropuot: 0.1}
"""
    found = {(d["range"]["start"]["line"], d["range"]["start"]["character"], d["message"]) for d in server.open(path, text)[1]}
    expected = {(*where(text, key), f"Property {key} is not allowed.")
                for key in ("adaptor_name", "lora_alpah", "num_train_epoch", "memry", "lora_dropuot")}
    assert found == expected | {(*where(text, "fast"), 'Incorrect type. Expected "number".')}
