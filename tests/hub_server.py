"""A real HTTP server on 127.0.0.1 speaking the part of the Hugging Face Hub API that a push and a download use.

Implemented (dataset repos only): repo create, repo info (and per revision), branch create, README YAML
validation, preupload (always answering uploadMode "regular", so content travels inline in the commit), the
NDJSON commit, paths-info, the recursive tree listing, and resolve (HEAD/GET) for file downloads. Every request is
recorded; `fail` scripts error replies (for retries, or a 500 that echoes the Authorization header back).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

from huggingface_hub.utils.sha import git_hash

REPO = r"(?P<repo>[^/]+/[^/]+)"
REV = r"(?P<rev>[^/?]+)"


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    description: str
    files: dict[str, bytes]
    added: list[str]
    deleted: list[str]


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)

    def files(self, rev: str) -> dict[str, bytes]:
        oid = self.branches.get(rev, rev)
        return self.commits[oid].files if oid in self.commits else {}

    def head(self, rev: str) -> str | None:
        oid = self.branches.get(rev, rev)
        return oid if oid in self.commits else None


@dataclass
class Scripted:
    method: str
    pattern: str
    status: int
    times: int
    echo_auth: bool


class HubServer:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[dict] = []
        self.script: list[Scripted] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server._handle(self, "GET")

            def do_HEAD(self):
                server._handle(self, "HEAD")

            def do_POST(self):
                server._handle(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- test helpers -------------------------------------------------------------------------------------------

    def fail(self, method: str, pattern: str, status: int, times: int = 1, echo_auth: bool = False) -> None:
        """Answer the next `times` requests whose path matches `pattern` with `status`."""
        self.script.append(Scripted(method, pattern, status, times, echo_auth))

    def commits(self, repo_id: str) -> list[Commit]:
        repo = self.repos[repo_id]
        return [c for c in repo.commits.values() if c.parent is not None]

    def calls(self, method: str, fragment: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and fragment in r["path"]]

    # --- dispatch ------------------------------------------------------------------------------------------------

    ROUTES = [
        ("POST", r"^/api/repos/create$", "_create_repo"),
        ("POST", r"^/api/validate-yaml$", "_validate_yaml"),
        ("POST", rf"^/api/datasets/{REPO}/branch/{REV}$", "_create_branch"),
        ("POST", rf"^/api/datasets/{REPO}/preupload/{REV}$", "_preupload"),
        ("POST", rf"^/api/datasets/{REPO}/commit/{REV}$", "_commit"),
        ("POST", rf"^/api/datasets/{REPO}/paths-info/{REV}$", "_paths_info"),
        ("GET", rf"^/api/datasets/{REPO}/tree/{REV}(?P<path>/.*)?$", "_tree"),
        ("GET", rf"^/api/datasets/{REPO}(/revision/{REV})?$", "_repo_info"),
        ("GET", rf"^/datasets/{REPO}/resolve/{REV}/(?P<path>.+)$", "_resolve"),
        ("HEAD", rf"^/datasets/{REPO}/resolve/{REV}/(?P<path>.+)$", "_resolve"),
    ]

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0)) if method == "POST" else b""
        auth = h.headers.get("Authorization")
        with self.lock:
            self.requests.append({"method": method, "path": url.path, "query": url.query, "auth": auth, "body": body,
                                  "content_type": h.headers.get("Content-Type", "")})
            for s in self.script:
                if s.times > 0 and s.method == method and re.search(s.pattern, url.path):
                    s.times -= 1
                    msg = f"internal error while handling request with Authorization: {auth}" if s.echo_auth \
                        else "try again later"
                    return self._send(h, method, s.status, {"error": msg}, {"Retry-After": "0"})
            for m, pattern, name in self.ROUTES:
                match = re.match(pattern, url.path) if m == method else None
                if match:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    status, payload, headers = getattr(self, name)(params, body, parse_qs(url.query), h)
                    return self._send(h, method, status, payload, headers)
        self._send(h, method, 404, {"error": f"no route for {method} {url.path}"}, {})

    @staticmethod
    def _send(h, method: str, status: int, payload, headers: dict) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream" if isinstance(payload, bytes) else "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(data)

    def _repo(self, repo_id: str) -> Repo | None:
        return self.repos.get(repo_id)

    @staticmethod
    def _missing(what: str, code: str = "RepoNotFound"):
        return 404, {"error": f"{what} not found"}, {"X-Error-Code": code, "X-Error-Message": f"{what} not found"}

    # --- endpoints -----------------------------------------------------------------------------------------------

    def _create_repo(self, p, body, q, h):
        req = json.loads(body)
        repo_id = f"{req['organization']}/{req['name']}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this dataset repo", "url": f"{self.url}/datasets/{repo_id}"}, {}
        repo = Repo(repo_id, private=req.get("visibility") == "private")
        first = Commit(hashlib.sha1(repo_id.encode()).hexdigest(), None, "initial commit", "", {}, [], [])
        repo.commits[first.oid] = first
        repo.branches["main"] = first.oid
        self.repos[repo_id] = repo
        return 200, {"url": f"{self.url}/datasets/{repo_id}", "name": repo_id}, {}

    def _validate_yaml(self, p, body, q, h):
        return 200, {"errors": [], "warnings": []}, {}

    def _create_branch(self, p, body, q, h):
        repo = self._repo(p["repo"])
        if repo is None:
            return self._missing("Repository")
        if p["rev"] in repo.branches:
            return 409, {"error": "Reference already exists"}, {}
        repo.branches[p["rev"]] = repo.branches["main"]
        return 200, {}, {}

    def _preupload(self, p, body, q, h):
        repo = self._repo(p["repo"])
        if repo is None:
            return self._missing("Repository")
        files = repo.files(p["rev"])
        out = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                "oid": git_hash(files[f["path"]]) if f["path"] in files else None}
               for f in json.loads(body)["files"]]
        return 200, {"files": out, "commitOid": repo.head(p["rev"])}, {}

    def _commit(self, p, body, q, h):
        repo = self._repo(p["repo"])
        if repo is None:
            return self._missing("Repository")
        if p["rev"] not in repo.branches:
            return self._missing("Revision", "RevisionNotFound")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        parent = repo.branches[p["rev"]]
        files = dict(repo.commits[parent].files)
        added, deleted = [], []
        for line in lines:
            if line["key"] == "file":
                files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                added.append(line["value"]["path"])
            elif line["key"] == "deletedFile":
                files.pop(line["value"]["path"], None)
                deleted.append(line["value"]["path"])
            elif line["key"] != "header":
                return 400, {"error": f"unsupported commit operation {line['key']}"}, {}
        oid = hashlib.sha1(body + parent.encode()).hexdigest()
        repo.commits[oid] = Commit(oid, parent, header["summary"], header.get("description", ""), files, added, deleted)
        repo.branches[p["rev"]] = oid
        return 200, {"commitUrl": f"{self.url}/datasets/{repo.repo_id}/commit/{oid}", "commitOid": oid,
                     "pullRequestUrl": None}, {}

    @staticmethod
    def _entry(path: str, content: bytes) -> dict:
        return {"type": "file", "path": path, "size": len(content), "oid": git_hash(content)}

    def _paths_info(self, p, body, q, h):
        repo = self._repo(p["repo"])
        if repo is None:
            return self._missing("Repository")
        files = repo.files(p["rev"])
        paths = parse_qs(body.decode()).get("paths", [])
        return 200, [self._entry(x, files[x]) for x in paths if x in files], {}

    def _tree(self, p, body, q, h):
        repo = self._repo(p["repo"])
        if repo is None:
            return self._missing("Repository")
        prefix = p.get("path", "").strip("/")
        files = repo.files(p["rev"])
        chosen = {k: v for k, v in files.items() if not prefix or k.startswith(prefix + "/")}
        if prefix and not chosen:
            return self._missing("Entry", "EntryNotFound")
        return 200, [self._entry(k, v) for k, v in sorted(chosen.items())], {}

    def _repo_info(self, p, body, q, h):
        repo = self._repo(p["repo"])
        if repo is None:
            return self._missing("Repository")
        rev = p.get("rev", "main")
        head = repo.head(rev)
        if head is None:
            return self._missing("Revision", "RevisionNotFound")
        return 200, {"id": repo.repo_id, "sha": head, "private": repo.private,
                     "siblings": [{"rfilename": k} for k in sorted(repo.files(rev))]}, {}

    def _resolve(self, p, body, q, h):
        repo = self._repo(p["repo"])
        if repo is None:
            return self._missing("Repository")
        files = repo.files(p["rev"])
        if p["path"] not in files:
            return self._missing("Entry", "EntryNotFound")
        content = files[p["path"]]
        return 200, content, {"X-Repo-Commit": repo.head(p["rev"]), "ETag": f'"{git_hash(content)}"'}
