"""A small local server that speaks the Hugging Face Hub's file protocol, for download tests.

It serves model repositories the way the Hub does for ``huggingface_hub``'s ``hf_hub_download``:
``HEAD``/``GET /{repo}/resolve/{revision}/{path}`` answers with ``X-Repo-Commit`` and an ``ETag``;
a small (git) file is served in place with its git blob id as ETag; a large (LFS) file gets a
302 redirect to a separate "CDN" origin with ``X-Linked-Etag`` (its sha256) and
``X-Linked-Size``, and the CDN honours ``Range`` requests (206 + ``Content-Range``), which the
client uses to resume a cut-off download. Errors carry the Hub's ``X-Error-Code`` header
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``). A private repository needs
``Authorization: Bearer TOKEN``. ``/api/models/{repo}[/revision/{rev}]`` returns the commit
and file list. Every request is logged (``files_requested`` lists the repository paths asked
for, so a test can assert exactly what was fetched). Faults for tests: serve corrupted bytes,
cut a transfer halfway (then resume, fail, or stall), change a file under its commit. Both origins bind 127.0.0.1 only and stop themselves after ``lifetime`` seconds.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
FAULTS = ("corrupt", "cut", "cut-dead", "stall")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob (what the Hub sends as ETag for a non-LFS file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    """A model repository: commits (id -> {path: bytes}), branches (name -> commit), optional token."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    token: str | None = None


@dataclass
class Request:
    """One request as the server saw it (header names in lower case)."""

    origin: str
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0


class HubServer:
    """Hub + CDN origins on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(self, *, lifetime: float = 120.0) -> None:
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.faults: dict[str, str] = {}
        self.fault_hits: dict[str, int] = {}
        self.log: list[Request] = []
        self.lifetime = lifetime
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._servers: list[ThreadingHTTPServer] = []
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._timer: threading.Timer | None = None
        self.url = ""
        self.cdn_url = ""

    # ---- content -------------------------------------------------------------------------
    def add_commit(self, repo_id: str, files: dict[str, bytes], *, branch: str = "main", token: str | None = None, keep: bool = True) -> str:
        """Commit ``files`` to ``repo_id`` on ``branch`` (on top of the branch's files when ``keep``); return the id."""
        repo = self.repos.setdefault(repo_id, Repo())
        if token is not None:
            repo.token = token
        parent = repo.refs.get(branch)
        tree = dict(repo.commits[parent]) if parent and keep else {}
        tree.update(files)
        h = hashlib.sha1(f"{repo_id}\n{parent}\n".encode())
        for path in sorted(tree):
            h.update(f"{path}\0{hashlib.sha256(tree[path]).hexdigest()}\n".encode())
        commit = h.hexdigest()
        repo.commits[commit] = tree
        repo.refs[branch] = commit
        for data in tree.values():
            self.blobs[hashlib.sha256(data).hexdigest()] = data
        return commit

    def fault(self, repo_id: str, path: str, kind: str, *, branch: str = "main") -> None:
        """Make the CDN misbehave for one LFS file: one of ``FAULTS``."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}")
        repo = self.repos[repo_id]
        data = repo.commits[repo.refs[branch]][path]
        self.faults[hashlib.sha256(data).hexdigest()] = kind

    def requests(self, origin: str | None = None, method: str | None = None) -> list[Request]:
        """Requests seen so far, optionally only one origin ("hub"/"cdn") or method."""
        with self._lock:
            return [r for r in self.log if (origin is None or r.origin == origin) and (method is None or r.method == method)]

    def files_requested(self, repo_id: str | None = None) -> list[str]:
        """Repository paths asked for through ``/resolve/`` (metadata or download), sorted, once each."""
        found = set()
        for r in self.requests("hub"):
            m = re.match(r"^/(?P<repo>[^/]+/[^/]+)/resolve/[^/]+/(?P<file>.+)$", urlsplit(r.path).path)
            if m is not None and (repo_id is None or unquote(m["repo"]) == repo_id):
                found.add(unquote(m["file"]))
        return sorted(found)

    def replace_file(self, repo_id: str, path: str, data: bytes, *, branch: str = "main") -> None:
        """Serve other bytes for ``path`` under the branch's current commit (what an honest Hub never does)."""
        repo = self.repos[repo_id]
        repo.commits[repo.refs[branch]][path] = data
        self.blobs[hashlib.sha256(data).hexdigest()] = data

    # ---- life cycle ------------------------------------------------------------------------
    def start(self) -> HubServer:
        """Start both origins on free ports and arm the self-stop timer."""
        self._stopped.clear()
        for origin in ("hub", "cdn"):
            handler = type(f"{origin.title()}Handler", (_Handler,), {"hub": self, "origin": origin})
            server = _Server(("127.0.0.1", 0), handler)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self.url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent); later requests to the ports are refused."""
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        with self._lock:
            open_connections, self._connections = list(self._connections), set()
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Dropped connections are part of the tests (cut-off transfers, stop()); keep stderr quiet."""


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    origin: str
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
        return

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # ---- plumbing ----------------------------------------------------------------------------
    def _dispatch(self, head: bool) -> None:
        if self.hub._stopped.is_set():
            self.close_connection = True
            return
        record = Request(self.origin, self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        with self.hub._lock:
            self.hub.log.append(record)
        path = urlsplit(self.path).path
        if self.origin == "cdn":
            status = self._cdn(path, head)
        elif path.startswith("/api/models/"):
            status = self._api(path[len("/api/models/"):], head)
        else:
            status = self._resolve(path, head)
        record.status = status

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"", head: bool = False) -> int:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
        return status

    def _error(self, status: int, code: str, message: str, head: bool, commit: str | None = None) -> int:
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        if commit:
            headers["X-Repo-Commit"] = commit
        return self._send(status, headers, json.dumps({"error": message}).encode(), head)

    def _repo(self, repo_id: str, head: bool) -> Repo | int:
        repo = self.hub.repos.get(repo_id)
        auth = self.headers.get("Authorization", "")
        if repo is None or (repo.token is not None and auth != f"Bearer {repo.token}"):
            return self._error(401, "RepoNotFound", "Repository not found", head)
        return repo

    @staticmethod
    def _commit(repo: Repo, revision: str) -> str | None:
        if revision in repo.refs:
            return repo.refs[revision]
        return revision if COMMIT_RE.match(revision) and revision in repo.commits else None

    def _repo_at(self, name: str, revision: str, head: bool) -> tuple[Repo, str] | int:
        """The repo ``name`` and the commit ``revision`` names in it, or the error response sent."""
        repo = self._repo(name, head)
        if isinstance(repo, int):
            return repo
        commit = self._commit(repo, revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        return repo, commit

    # ---- Hub origin --------------------------------------------------------------------------
    def _resolve(self, path: str, head: bool) -> int:
        m = re.match(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", path)
        if m is None:
            return self._error(404, "NotFound", "Not found", head)
        revision, filename = unquote(m["rev"]), unquote(m["file"])
        found = self._repo_at(unquote(m["repo"]), revision, head)
        if isinstance(found, int):
            return found
        repo, commit = found
        data = repo.commits[commit].get(filename)
        if data is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist on {revision!r}", head, commit)
        common = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if filename.endswith(LFS_SUFFIXES):
            sha = hashlib.sha256(data).hexdigest()
            location = f"{self.hub.cdn_url}/lfs/{sha}?X-Amz-Signature=local"
            headers = {
                **common,
                "Location": location,
                "ETag": f'"{git_blob_id(f"oid sha256:{sha}".encode())}"',
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(len(data)),
            }
            return self._send(302, headers, f"Found. Redirecting to {location}".encode(), head)
        headers = {**common, "ETag": f'"{git_blob_id(data)}"', "Content-Type": "application/octet-stream"}
        return self._ranged(data, headers, head)

    def _api(self, rest: str, head: bool) -> int:
        m = re.match(r"^(?P<repo>[^/]+/[^/]+?)(?:/revision/(?P<rev>[^/]+))?$", rest)
        if m is None:
            return self._error(404, "NotFound", "Not found", head)
        found = self._repo_at(unquote(m["repo"]), unquote(m["rev"] or "main"), head)
        if isinstance(found, int):
            return found
        repo, commit = found
        tree = repo.commits[commit]
        body = {
            "id": unquote(m["repo"]),
            "modelId": unquote(m["repo"]),
            "sha": commit,
            "private": repo.token is not None,
            "siblings": [{"rfilename": p, "size": len(d)} for p, d in sorted(tree.items())],
        }
        return self._send(200, {"Content-Type": "application/json"}, json.dumps(body).encode(), head)

    # ---- CDN origin --------------------------------------------------------------------------
    def _cdn(self, path: str, head: bool) -> int:
        m = re.match(r"^/lfs/(?P<sha>[0-9a-f]{64})$", path)
        data = self.hub.blobs.get(m["sha"]) if m else None
        if data is None:
            return self._send(404, {}, b"NoSuchKey", head)
        sha = m["sha"]  # type: ignore[index]
        fault = self.hub.faults.get(sha)
        headers = {"ETag": f'"{sha}"', "Content-Type": "application/octet-stream"}
        if fault == "corrupt":
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0xFF
            return self._ranged(bytes(flipped), headers, head)
        if fault in ("cut", "cut-dead", "stall") and not head:
            with self.hub._lock:
                hits = self.hub.fault_hits.get(sha, 0)
                self.hub.fault_hits[sha] = hits + 1
            if hits == 0:
                return self._cut(data, headers, stall=fault == "stall")
            if fault == "cut-dead":
                return self._send(503, {}, b"Service Unavailable", head)
        return self._ranged(data, headers, head)

    def _ranged(self, data: bytes, headers: dict[str, str], head: bool) -> int:
        """Serve ``data`` whole, or the part a ``Range: bytes=a-[b]`` header asks for (206)."""
        spec = self.headers.get("Range")
        if spec is None:
            return self._send(200, {**headers, "Accept-Ranges": "bytes"}, data, head)
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", spec.strip())
        size = len(data)
        if m is None or int(m[1]) >= size:
            return self._send(416, {"Content-Range": f"bytes */{size}"}, b"", head)
        start = int(m[1])
        end = min(int(m[2]), size - 1) if m[2] else size - 1
        part = {**headers, "Accept-Ranges": "bytes", "Content-Range": f"bytes {start}-{end}/{size}"}
        return self._send(206, part, data[start:end + 1], head)

    def _cut(self, data: bytes, headers: dict[str, str], stall: bool) -> int:
        """Announce the whole file, send half of it, then drop the connection (or hang until stop)."""
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        if stall:
            self.hub._stopped.wait(self.hub.lifetime)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return 200
