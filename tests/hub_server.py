"""A real HTTP server on 127.0.0.1 speaking the part of the Hugging Face Hub API that a push and a download use.

Implemented (dataset repos only): repo create, repo info (and per revision), branch create, README YAML
validation, preupload, the git-LFS batch API with the basic transfer (PUT of the content to the href the batch
answer gives, then verify), the NDJSON commit (inline `file` and `lfsFile` lines), paths-info, the recursive tree
listing, and resolve (HEAD/GET) for file downloads. Preupload answers "lfs" the way the Hub's default
.gitattributes and size rule do: Parquet, images and archives, files of `lfs_threshold` bytes or more, and binary
content; everything else travels inline. LFS objects are checked against their sha256 and size on upload and a
commit may only name objects that were uploaded and verified. Tree and paths-info report LFS files with their
pointer's blob id and an `lfs` entry, as the Hub does. Every request is recorded; `fail` scripts error replies (for
retries, or a 500 that echoes the Authorization header back).

huggingface_hub uploads LFS-mode files through Xet storage when hf_xet is installed; this server speaks the
git-LFS protocol only, so a client must set HF_HUB_DISABLE_XET (tests patch `huggingface_hub.constants`).
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

REPO = r"(?P<repo>[^/]+/[^/]+?)"
REV = r"(?P<rev>[^/?]+)"
LFS_SUFFIXES = (".parquet", ".arrow", ".png", ".jpg", ".jpeg", ".npz", ".zip", ".gz", ".bin")


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-LFS pointer file a repository stores in place of the content."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    description: str
    files: dict[str, bytes]
    added: list[str]
    deleted: list[str]
    lfs: set[str] = field(default_factory=set)  # paths stored as LFS objects


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)

    def files(self, rev: str) -> dict[str, bytes]:
        oid = self.branches.get(rev, rev)
        return self.commits[oid].files if oid in self.commits else {}

    def lfs_paths(self, rev: str) -> set[str]:
        oid = self.branches.get(rev, rev)
        return self.commits[oid].lfs if oid in self.commits else set()

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
    def __init__(self, lfs_threshold: int = 10 * 1024 * 1024):
        self.repos: dict[str, Repo] = {}
        self.lfs_threshold = lfs_threshold
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, uploaded and checked
        self.lfs_verified: set[str] = set()
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

            def do_PUT(self):
                server._handle(self, "PUT")

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

    def stored_as_lfs(self, repo_id: str, rev: str = "main") -> set[str]:
        return set(self.repos[repo_id].lfs_paths(rev))

    # --- dispatch ------------------------------------------------------------------------------------------------

    ROUTES = [
        ("POST", r"^/api/repos/create$", "_create_repo"),
        ("POST", r"^/api/validate-yaml$", "_validate_yaml"),
        ("POST", rf"^/api/datasets/{REPO}/branch/{REV}$", "_create_branch"),
        ("POST", rf"^/api/datasets/{REPO}/preupload/{REV}$", "_preupload"),
        ("POST", rf"^/api/datasets/{REPO}/commit/{REV}$", "_commit"),
        ("POST", rf"^/datasets/{REPO}\.git/info/lfs/objects/batch$", "_lfs_batch"),
        ("PUT", r"^/lfs-storage/(?P<oid>[0-9a-f]{64})$", "_lfs_put"),
        ("POST", r"^/lfs-verify/(?P<oid>[0-9a-f]{64})$", "_lfs_verify"),
        ("POST", rf"^/api/datasets/{REPO}/paths-info/{REV}$", "_paths_info"),
        ("GET", rf"^/api/datasets/{REPO}/tree/{REV}(?P<path>/.*)?$", "_tree"),
        ("GET", rf"^/api/datasets/{REPO}(/revision/{REV})?$", "_repo_info"),
        ("GET", rf"^/datasets/{REPO}/resolve/{REV}/(?P<path>.+)$", "_resolve"),
        ("HEAD", rf"^/datasets/{REPO}/resolve/{REV}/(?P<path>.+)$", "_resolve"),
    ]

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        body = self._body(h) if method in ("POST", "PUT") else b""
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
    def _body(h: BaseHTTPRequestHandler) -> bytes:
        """The request body, sent with a Content-Length or in chunks (httpx streams file uploads chunked)."""
        if h.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return h.rfile.read(int(h.headers.get("Content-Length") or 0))
        out = bytearray()
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return bytes(out)
            out += h.rfile.read(size)
            h.rfile.readline()  # the CRLF after each chunk

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
        out = [{"path": f["path"], "uploadMode": self._upload_mode(f), "shouldIgnore": False,
                "oid": git_hash(files[f["path"]]) if f["path"] in files else None}
               for f in json.loads(body)["files"]]
        return 200, {"files": out, "commitOid": repo.head(p["rev"])}, {}

    def _upload_mode(self, f: dict) -> str:
        binary = b"\0" in base64.b64decode(f.get("sample", ""))
        lfs = f["path"].lower().endswith(LFS_SUFFIXES) or f.get("size", 0) >= self.lfs_threshold or binary
        return "lfs" if lfs else "regular"

    def _lfs_batch(self, p, body, q, h):
        if self._repo(p["repo"]) is None:
            return self._missing("Repository")
        req = json.loads(body)
        if req.get("operation") != "upload" or "basic" not in req.get("transfers", ["basic"]):
            return 422, {"message": "only uploads with the basic transfer are supported"}, {}
        objects = []
        for o in req["objects"]:
            entry = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if o["oid"] not in self.lfs_verified:  # already stored objects get no actions: nothing to send
                entry["actions"] = {"upload": {"href": f"{self.url}/lfs-storage/{o['oid']}", "header": {}},
                                    "verify": {"href": f"{self.url}/lfs-verify/{o['oid']}", "header": {}}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, {}

    def _lfs_put(self, p, body, q, h):
        if hashlib.sha256(body).hexdigest() != p["oid"]:
            return 400, {"message": "content does not match the object id"}, {}
        self.lfs_objects[p["oid"]] = body
        return 200, b"", {}

    def _lfs_verify(self, p, body, q, h):
        req = json.loads(body)
        content = self.lfs_objects.get(p["oid"])
        if content is None or req.get("oid") != p["oid"] or req.get("size") != len(content):
            return 404, {"message": "object not uploaded"}, {}
        self.lfs_verified.add(p["oid"])
        return 200, {}, {}

    def _commit(self, p, body, q, h):
        repo = self._repo(p["repo"])
        if repo is None:
            return self._missing("Repository")
        if p["rev"] not in repo.branches:
            return self._missing("Revision", "RevisionNotFound")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        parent = repo.branches[p["rev"]]
        files, lfs = dict(repo.commits[parent].files), set(repo.commits[parent].lfs)
        added, deleted = [], []
        for line in lines:
            if line["key"] == "file":
                files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                lfs.discard(line["value"]["path"])
                added.append(line["value"]["path"])
            elif line["key"] == "lfsFile":
                oid = line["value"]["oid"]
                if line["value"].get("algo") != "sha256" or oid not in self.lfs_verified:
                    return 422, {"error": f"LFS object {oid} of {line['value']['path']} was not uploaded"}, {}
                files[line["value"]["path"]] = self.lfs_objects[oid]
                lfs.add(line["value"]["path"])
                added.append(line["value"]["path"])
            elif line["key"] == "deletedFile":
                files.pop(line["value"]["path"], None)
                lfs.discard(line["value"]["path"])
                deleted.append(line["value"]["path"])
            elif line["key"] != "header":
                return 400, {"error": f"unsupported commit operation {line['key']}"}, {}
        oid = hashlib.sha1(body + parent.encode()).hexdigest()
        repo.commits[oid] = Commit(oid, parent, header["summary"], header.get("description", ""), files, added, deleted,
                                   lfs)
        repo.branches[p["rev"]] = oid
        return 200, {"commitUrl": f"{self.url}/datasets/{repo.repo_id}/commit/{oid}", "commitOid": oid,
                     "pullRequestUrl": None}, {}

    @staticmethod
    def _entry(path: str, content: bytes, lfs: bool = False) -> dict:
        if not lfs:
            return {"type": "file", "path": path, "size": len(content), "oid": git_hash(content)}
        sha, pointer = hashlib.sha256(content).hexdigest(), lfs_pointer(hashlib.sha256(content).hexdigest(), len(content))
        return {"type": "file", "path": path, "size": len(content), "oid": git_hash(pointer),
                "lfs": {"oid": sha, "size": len(content), "pointerSize": len(pointer)}}

    def _paths_info(self, p, body, q, h):
        repo = self._repo(p["repo"])
        if repo is None:
            return self._missing("Repository")
        files, lfs = repo.files(p["rev"]), repo.lfs_paths(p["rev"])
        paths = parse_qs(body.decode()).get("paths", [])
        return 200, [self._entry(x, files[x], x in lfs) for x in paths if x in files], {}

    def _tree(self, p, body, q, h):
        repo = self._repo(p["repo"])
        if repo is None:
            return self._missing("Repository")
        prefix = p.get("path", "").strip("/")
        files, lfs = repo.files(p["rev"]), repo.lfs_paths(p["rev"])
        chosen = {k: v for k, v in files.items() if not prefix or k.startswith(prefix + "/")}
        if prefix and not chosen:
            return self._missing("Entry", "EntryNotFound")
        if q.get("recursive", ["false"])[0].lower() == "true":
            return 200, [self._entry(k, v, k in lfs) for k, v in sorted(chosen.items())], {}
        # one level: the files directly under the folder and its subfolders as directory entries (as the Hub lists)
        depth = prefix.count("/") + 1 if prefix else 0
        out, folders = [], set()
        for k, v in sorted(chosen.items()):
            parts = k.split("/")
            if len(parts) == depth + 1:
                out.append(self._entry(k, v, k in lfs))
            else:
                folders.add("/".join(parts[:depth + 1]))
        out += [{"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()} for d in sorted(folders)]
        return 200, out, {}

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
        headers = {"X-Repo-Commit": repo.head(p["rev"]), "ETag": f'"{git_hash(content)}"'}
        if p["path"] in repo.lfs_paths(p["rev"]):  # the Hub names LFS content by its sha256
            sha = hashlib.sha256(content).hexdigest()
            headers.update({"ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(content))})
        return 200, content, headers
