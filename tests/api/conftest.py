"""Harness for the black-box API tests: a real jobqd on a free loopback port.

Each server gets its own temporary data directory and log file. Fixtures:

- ``server``          a fresh server for this test (use when the test restarts, kills or
                      needs a server no other test touched: workers list, global counts).
- ``srv``             a server shared by the tests of one module; tests keep to their own
                      queues (``q`` / ``srv.qname()``). It is replaced if a test kills it.
- ``server_factory``  start more servers, with extra flags (``--strict-queues``) or on a
                      given data directory.

Every server is stopped with SIGTERM at teardown; the exit status must be 0 and its stderr
must hold no sanitizer report, else the test fails showing that stderr. ``$JOBQD`` names
the binary (default build/jobqd); the ASan pass points it at a sanitizer build.

Helpers that tests import: ``assert_error``, ``now_ms``, ``wait_until``, ``raw_request``,
``read_responses``.
"""

import http.client
import itertools
import json
import os
import re
import select
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBQD = os.environ.get("JOBQD") or str(REPO / "build" / "jobqd")
STARTUP_TIMEOUT = 15.0  # s; the sanitizer build starts slowly
STOP_TIMEOUT = 20.0  # s
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
LISTEN_RE = re.compile(r"jobqd: listening on (\S+):(\d+)")
_NOBODY = object()


def now_ms():
    return int(time.time() * 1000)


def wait_until(fn, timeout=5.0, interval=0.02, what="condition"):
    """Call fn until it returns something truthy; return that. Fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


class Response:
    def __init__(self, status, headers, body, method="", path=""):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage or dict with lower-case keys
        self.body = body
        self.method = method
        self.path = path

    def header(self, name, default=None):
        if isinstance(self.headers, dict):
            return self.headers.get(name.lower(), default)
        return self.headers.get(name, default)

    @property
    def json(self):
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(f"{self.method} {self.path} -> {self.status}: body is not JSON: "
                                 f"{self.body[:500]!r}") from None

    def __repr__(self):
        return f"<{self.method} {self.path} -> {self.status} {self.body[:800]!r}>"


def assert_error(resp, status, code=None, field=None):
    """Check an error answer: status, {"error":{"code","message"}} shape, code and field.

    resp is a Response or a (status, json) pair. code may be a string or a tuple of strings.
    field: details.field must start with it or name it as one part of a path (so "backoff"
    matches "backoff.jitter" and "bogus" matches "jobs[1].bogus")."""
    if isinstance(resp, Response):
        st, body = resp.status, resp.json
        ctype = resp.header("Content-Type", "") or ""
        assert "application/json" in ctype, f"error Content-Type {ctype!r}: {resp!r}"
    else:
        st, body = resp
    assert st == status, f"expected {status}, got {st}: {body!r}"
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), \
        f"error body shape: {body!r}"
    err = body["error"]
    assert isinstance(err.get("code"), str) and err["code"], f"error.code: {body!r}"
    assert isinstance(err.get("message"), str) and err["message"], f"error.message: {body!r}"
    if code is not None:
        codes = (code,) if isinstance(code, str) else tuple(code)
        assert err["code"] in codes, f"expected code {codes}, got {err['code']!r}: {body!r}"
    if field is not None:
        details = err.get("details")
        assert isinstance(details, dict), f"error.details missing: {body!r}"
        got = details.get("field")
        assert isinstance(got, str) and (got.startswith(field)
                                         or field in re.split(r"[.\[\]/]+", got)), \
            f"expected details.field {field!r}, got {got!r}: {body!r}"
    return err


# ---- raw sockets -------------------------------------------------------------------------


class RawResponse(Response):
    pass


def _parse_one(buf, closed):
    """Parse one HTTP response from buf. Return (RawResponse, rest) or None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    status = int(parts[1])
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    rest = buf[end + 4:]
    if status in (204, 304) or 100 <= status < 200:
        return RawResponse(status, headers, b""), rest
    if "content-length" in headers:
        n = int(headers["content-length"])
        if len(rest) < n:
            return None
        return RawResponse(status, headers, rest[:n]), rest[n:]
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        pos = 0
        while True:
            eol = rest.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(rest[pos:eol].split(b";")[0], 16)
            if size == 0:
                fin = rest.find(b"\r\n\r\n", eol)
                if rest[eol:eol + 4] == b"\r\n\r\n":
                    return RawResponse(status, headers, body), rest[eol + 4:]
                if fin < 0:
                    return None
                return RawResponse(status, headers, body), rest[fin + 4:]
            if len(rest) < eol + 2 + size + 2:
                return None
            body += rest[eol + 2:eol + 2 + size]
            pos = eol + 2 + size + 2
    if closed:
        return RawResponse(status, headers, rest), b""
    return None


def read_responses(sock, n=1, timeout=10.0):
    """Read up to n HTTP responses from sock. Returns (responses, closed_by_peer)."""
    buf = b""
    out = []
    closed = False
    deadline = time.monotonic() + timeout
    while len(out) < n:
        parsed = _parse_one(buf, closed)
        if parsed:
            out.append(parsed[0])
            buf = parsed[1]
            continue
        if closed:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            continue
        if not chunk:
            closed = True
            continue
        buf += chunk
    return out, closed


def raw_request(port, data, nodelay=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if data:
        s.sendall(data)
    return s


def send_streaming(sock, header_bytes, body_iter, timeout=10.0):
    """Send headers then body chunks, stopping early if the server answers (e.g. 413).

    Returns (responses, closed)."""
    sock.sendall(header_bytes)
    for chunk in body_iter:
        r, _, _ = select.select([sock], [], [], 0)
        if r:
            break
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
    return read_responses(sock, 1, timeout)


# ---- client ------------------------------------------------------------------------------


class Client:
    """Small JSON client: one connection per request."""

    host = "127.0.0.1"
    port = None
    _names = itertools.count(1)

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def request(self, method, path, body=_NOBODY, headers=None, timeout=10.0):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            hdrs = {}
            if body is _NOBODY:
                data = None
            elif isinstance(body, (bytes, bytearray)):
                data = bytes(body)
            elif isinstance(body, str):
                data = body.encode()
            else:
                data = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            hdrs.update(headers or {})
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            raw = r.read()
            return Response(r.status, r.headers, raw, method, path)
        finally:
            conn.close()

    def get(self, path, **kw):
        r = self.request("GET", path, **kw)
        return r.status, r.json

    def post(self, path, body=_NOBODY, **kw):
        r = self.request("POST", path, body, **kw)
        return r.status, r.json

    def patch(self, path, body=_NOBODY, **kw):
        r = self.request("PATCH", path, body, **kw)
        return r.status, r.json

    def delete(self, path, **kw):
        r = self.request("DELETE", path, **kw)
        return r.status, r.json

    # -- helpers that assert the happy path --------------------------------------------------

    def call(self, method, path, body=_NOBODY, expect=200, **kw):
        r = self.request(method, path, body, **kw)
        exp = (expect,) if isinstance(expect, int) else tuple(expect)
        assert r.status in exp, f"expected {exp}: {r!r}"
        return r.json

    def qname(self, prefix="q"):
        return f"{prefix}-{next(Client._names)}-{uuid.uuid4().hex[:8]}"

    def create_queue(self, name=None, **opts):
        body = {"name": name or self.qname()}
        body.update(opts)
        return self.call("POST", "/v1/queues", body, 201)

    def queue(self, q):
        return self.call("GET", f"/v1/queues/{q}")

    def enqueue(self, q, data=None, **opts):
        body = dict(opts)
        body["data"] = data
        return self.call("POST", f"/v1/queues/{q}/jobs", body, 201)

    def enqueue_bulk(self, q, items):
        out = self.call("POST", f"/v1/queues/{q}/jobs", {"jobs": items}, 201)
        return out["jobs"]

    def job(self, jid):
        return self.call("GET", f"/v1/jobs/{jid}")

    def state(self, jid):
        return self.job(jid)["state"]

    def wait_state(self, jid, state, timeout=5.0):
        states = (state,) if isinstance(state, str) else tuple(state)

        def check():
            j = self.job(jid)
            return j if j["state"] in states else None

        return wait_until(check, timeout, what=f"job {jid} in state {states}")

    def fetch(self, queues, count=1, wait_ms=0, worker="test-worker", timeout=None, **extra):
        body = {"queues": [queues] if isinstance(queues, str) else list(queues),
                "count": count, "wait_ms": wait_ms, "worker": worker}
        body.update(extra)
        t = timeout if timeout is not None else 10.0 + wait_ms / 1000.0
        return self.call("POST", "/v1/fetch", body, 200, timeout=t)["jobs"]

    def fetch_one(self, queues, **kw):
        jobs = self.fetch(queues, **kw)
        assert len(jobs) == 1, f"expected one job from {queues}, got {jobs!r}"
        return jobs[0]

    def fetch_until(self, queues, timeout=5.0, **kw):
        """Poll fetch (wait_ms 0) until it hands out a job; return it."""
        return wait_until(lambda: (self.fetch(queues, **kw) or [None])[0], timeout,
                          what=f"a job from {queues}")

    def complete(self, job, result=None, expect=200):
        body = {"lease": job["lease"]}
        if result is not None:
            body["result"] = result
        return self.call("POST", f"/v1/jobs/{job['id']}/complete", body, expect)

    def fail(self, job, message="boom", expect=200, retry_in_ms=None, **error):
        err = {"message": message}
        err.update(error)
        body = {"lease": job["lease"], "error": err}
        if retry_in_ms is not None:
            body["retry_in_ms"] = retry_in_ms
        return self.call("POST", f"/v1/jobs/{job['id']}/fail", body, expect)

    def heartbeat(self, job, expect=200, **kw):
        body = {"lease": job["lease"]}
        body.update(kw)
        return self.call("POST", f"/v1/jobs/{job['id']}/heartbeat", body, expect)

    def list_jobs(self, **params):
        from urllib.parse import urlencode
        return self.call("GET", "/v1/jobs?" + urlencode(params))


class Server(Client):
    """A jobqd process plus the client that talks to it."""

    _serial = itertools.count(1)

    def __init__(self, data_dir, log_dir, args=()):
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.args = list(args)
        self.proc = None
        self.logs = []  # every log file this server object wrote, oldest first
        self.problems = []

    # -- process control ---------------------------------------------------------------------

    def spawn(self, args=None, data_dir=None):
        """Start a jobqd process; return (Popen, log path) without waiting for it."""
        log = self.log_dir / f"jobqd-{next(Server._serial)}.log"
        f = open(log, "wb")
        env = dict(os.environ)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        cmd = [JOBQD, "--listen", "127.0.0.1:0", "--data", str(data_dir or self.data_dir)]
        cmd += list(self.args if args is None else args)
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, env=env)
        finally:
            f.close()
        return proc, log

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        proc, log = self.spawn()
        self.proc = proc
        self.logs.append(log)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            m = LISTEN_RE.search(log.read_text(errors="replace"))
            if m:
                self.port = int(m.group(2))
                return self
            if proc.poll() is not None:
                raise AssertionError(f"jobqd exited with {proc.returncode} before listening:\n"
                                     f"{self.log_text()}")
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError(f"jobqd did not print its address in {STARTUP_TIMEOUT}s:\n"
                                     f"{self.log_text()}")
            time.sleep(0.01)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signal the server and wait; return its exit status (None if it did not exit)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def restart(self, args=None):
        """Stop (SIGTERM, must exit 0) if running, then start on the same data dir."""
        if self.alive():
            rc = self.terminate()
            assert rc == 0, f"jobqd exit status {rc} on SIGTERM:\n{self.log_text()}"
        if args is not None:
            self.args = list(args)
        return self.start()

    def log_text(self):
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')}" for p in self.logs)

    def sanitizer_report(self):
        text = self.log_text()
        return text if any(m in text for m in SANITIZER_MARKERS) else None

    def stop_and_check(self):
        """SIGTERM, then list problems: bad exit status or sanitizer output."""
        problems = []
        if self.alive():
            rc = self.terminate()
            if rc != 0:
                problems.append(f"exit status {rc} after SIGTERM (expected 0)")
        if self.sanitizer_report():
            problems.append("sanitizer report in stderr")
        return problems


def _finish(servers):
    failures = []
    for s in servers:
        problems = s.stop_and_check()
        if problems:
            failures.append(f"jobqd ({', '.join(problems)}):\n{s.log_text()}")
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture
def server_factory(tmp_path):
    servers = []
    counter = itertools.count(1)

    def make(args=(), data_dir=None, start=True):
        n = next(counter)
        d = Path(data_dir) if data_dir else tmp_path / f"data{n}"
        d.mkdir(parents=True, exist_ok=True)
        s = Server(d, tmp_path, args)
        servers.append(s)
        if start:
            s.start()
        return s

    yield make
    _finish(servers)


@pytest.fixture
def server(server_factory):
    return server_factory()


class _Shared:
    def __init__(self, tmp):
        self.tmp = tmp
        self.n = 0
        self.server = None
        self.retired = []

    def fresh(self):
        self.n += 1
        d = self.tmp / f"data{self.n}"
        d.mkdir()
        self.server = Server(d, self.tmp).start()
        return self.server


@pytest.fixture(scope="module")
def _shared(tmp_path_factory):
    holder = _Shared(tmp_path_factory.mktemp("shared"))
    holder.fresh()
    yield holder
    _finish([holder.server])


@pytest.fixture
def srv(_shared):
    s = _shared.server
    before = s.sanitizer_report()
    yield s
    if not s.alive():
        text = s.log_text()
        _shared.retired.append(s)
        _shared.fresh()
        pytest.fail(f"shared jobqd died during this test (status {s.proc.returncode}):\n{text}",
                    pytrace=False)
    after = s.sanitizer_report()
    if after and after != before:
        pytest.fail(f"sanitizer report from jobqd:\n{after}", pytrace=False)


@pytest.fixture
def q(srv):
    """A fresh queue name on the shared server (the queue is not created)."""
    return srv.qname()
