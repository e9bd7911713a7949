"""A Hub on 127.0.0.1 for tests: the file routes (`/{repo}/resolve/{rev}/{file}`, HEAD and GET) and the
tree listing, set as huggingface_hub's endpoint, so the real download code runs without a network."""
import hashlib
import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from huggingface_hub import constants


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def use_endpoint(monkeypatch, url: str) -> None:
    """huggingface_hub derives its URL template from HF_ENDPOINT at import; patch both, then go online."""
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


class HubHandler(BaseHTTPRequestHandler):
    """The Hub's file routes (`/{repo}/resolve/{rev}/{file}`, HEAD and GET) and its tree listing."""

    timeout = 5  # a stuck client cannot hold a server thread

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.answer(with_body=False)

    def do_GET(self):
        self.answer(with_body=True)

    def answer(self, with_body: bool):
        self.server.requests.append((self.command, self.path))
        path = unquote(urlsplit(self.path).path)
        route = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path) or re.fullmatch(
            r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        files = self.server.repos.get(route.group(1)) if route else None
        if files is None:
            return self.send(404, b"", {"X-Error-Code": "RepoNotFound"}, with_body)
        if route.group(2) not in ("main", COMMIT):
            return self.send(404, b"", {"X-Error-Code": "RevisionNotFound"}, with_body)
        if path.startswith("/api/"):
            tree = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for name, data in files.items()]
            return self.send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, with_body)
        data = files.get(route.group(3))
        if data is None:
            return self.send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, with_body)
        self.send(200, data, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}, with_body)

    def send(self, code: int, data: bytes, headers: dict, with_body: bool):
        self.send_response(code)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        if with_body:
            self.wfile.write(data)


@contextmanager
def serving(monkeypatch, repos: dict[str, dict[str, bytes]]):
    """Serve `repos` ({repo id: {file name: bytes}}) until the block ends; yields the server (its
    `requests` list records every request)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), HubHandler)
    server.requests, server.repos = [], repos
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    use_endpoint(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
