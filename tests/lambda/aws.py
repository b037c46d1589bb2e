"""The local AWS the Lambda tests run against: moto's S3 server on 127.0.0.1, a proxy in front
of it that turns chosen objects into faults, and `cargo lambda watch` emulating the functions."""
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOLS = os.path.join(ROOT, ".venv-aws", "bin")
# Credentials moto accepts; the secret is distinctive so a test can look for leaks.
SECRET = "cloudify-test-secret-key-do-not-leak"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIACLOUDIFYTEST",
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# Objects with these names answer 403 AccessDenied, or answer late.
FORBIDDEN, SLOW = "forbidden.nc", "slow.nc"
SLOW_SECONDS = 4
# Instances of each emulated function.
INSTANCES = 8
# The S3 timeout of the functions under test: well under SLOW_SECONDS.
TIMEOUT_MS = 1500


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(url, seconds=120, ok=lambda r: True):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if ok(requests.get(url, timeout=5)):
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {seconds} s")


def stop(proc):
    """Stop a process started with start_new_session, and its children."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


class Moto:
    """moto's S3 server, in memory."""

    def __init__(self):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        moto = os.path.join(ROOT, ".venv", "bin", "moto_server")
        self.proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_for(self.url + "/moto-api/")

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=SECRET)

    def stop(self):
        stop(self.proc)


class FaultProxy:
    """Forwards every request to `upstream` unchanged, except for objects named FORBIDDEN
    (403 AccessDenied, as S3 answers a role without s3:GetObject) and SLOW (answered after
    SLOW_SECONDS), each after `latency_ms` (an object store's time to first byte). Path-style
    S3 requests name the object in the path. It counts the body bytes it sends per path,
    answered at `/__proxy__/sent`, and the requests it forwarded by method, at
    `/__proxy__/requests`. It runs in its own process, so the tests' threads do not slow it."""

    def __init__(self, upstream, latency_ms=0):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([sys.executable, __file__, "proxy", str(port), upstream,
                                      str(latency_ms)], start_new_session=True)
        wait_for(self.url + "/")

    def requests(self):
        """Requests forwarded so far, by method."""
        return requests.get(self.url + "/__proxy__/requests", timeout=10).json()

    def sent(self, path):
        """Body bytes sent so far for GETs of `path` (`/bucket/key`)."""
        return requests.get(self.url + "/__proxy__/sent", timeout=10).json().get(path, 0)

    def stop(self):
        stop(self.proc)


def serve_proxy(port, upstream, latency_ms=0):
    local = threading.local()
    sent, lock = {}, threading.Lock()
    methods = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def setup(self):
            super().setup()
            # One write per answer and no Nagle delay: the functions wait on every read.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def answer(self, status, headers, body):
            lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}"]
            lines += [f"{k}: {v}" for k, v in headers]
            lines.append(f"Content-Length: {len(body)}")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            self.wfile.write(head + (b"" if self.command == "HEAD" else body))

        def forward(self):
            path = self.path.split("?")[0]
            if path == "/__proxy__/sent":
                with lock:
                    body = json.dumps(sent).encode()
                return self.answer(200, [("Content-Type", "application/json")], body)
            if path == "/__proxy__/requests":
                with lock:
                    body = json.dumps(methods).encode()
                return self.answer(200, [("Content-Type", "application/json")], body)
            with lock:
                methods[self.command] = methods.get(self.command, 0) + 1
            time.sleep(latency_ms / 1000)
            if path.endswith("/" + FORBIDDEN):
                body = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied"
                        b"</Code><Message>Access Denied</Message></Error>")
                return self.answer(403, [("Content-Type", "application/xml")], body)
            if path.endswith("/" + SLOW):
                time.sleep(SLOW_SECONDS)
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            if not hasattr(local, "session"):
                local.session = requests.Session()
            r = local.session.request(self.command, upstream + self.path, headers=headers,
                                      data=data, allow_redirects=False)
            kept = [(k, v) for k, v in r.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                         "content-encoding")]
            if self.command == "HEAD" and "Content-Length" in r.headers:
                # A HEAD answer's length is the object's, not of the (empty) body.
                head = [f"HTTP/1.1 {r.status_code} {r.reason}"]
                head += [f"{k}: {v}" for k, v in kept]
                head.append(f"Content-Length: {r.headers['Content-Length']}")
                return self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            if self.command == "GET":
                with lock:
                    sent[path] = sent.get(path, 0) + len(r.content)
            self.answer(r.status_code, kept, r.content)

        do_GET = do_HEAD = do_PUT = do_DELETE = do_POST = forward  # noqa: N815

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def s3_env(endpoint, **extra):
    env = dict(os.environ, **CREDENTIALS, AWS_ENDPOINT_URL=endpoint,
               CLOUDIFY_S3_TIMEOUT_MS=str(TIMEOUT_MS))
    env.update(extra)
    return env


def lost_invocation(status, body):
    """A 500 that is not the core's: the core never answers 500, and its errors are JSON
    objects with an "error" field; the emulator answers 500, now and then, for an invocation
    it lost between two instances. A client of Lambda asks once more. (A panic of the function
    would look alike: the `lam` fixture fails on any panic in the emulator's log.)"""
    if status != 500:
        return False
    try:
        doc = json.loads(body)
    except ValueError:
        return True
    return not (isinstance(doc, dict) and "error" in doc)


# Tries of a request whose invocation the emulator lost; under load it loses two in a row now
# and then.
TRIES = 3
# Seconds without a byte of an answer after which a request counts as lost: now and then the
# emulator drops the answer of an invocation the function did answer (its log shows the 200),
# and the client would otherwise wait for aiohttp's five-minute total.
LOST_AFTER = 30


async def _retry_lost_invocation(request, handler):
    for _ in range(TRIES - 1):
        try:
            response = await handler(request)
        except asyncio.TimeoutError:  # the session's `sock_read`: no answer
            continue
        if not (response.status == 500 and lost_invocation(500, await response.read())):
            return response
        response.release()
    return await handler(request)


async def retrying_client(**kwargs):
    """fsspec's `get_client`: its default aiohttp session, asking again after a lost
    invocation, a 500 or no answer at all, as `LambdaWatch.get` does."""
    import aiohttp

    kwargs.setdefault("timeout", aiohttp.ClientTimeout(total=None, sock_read=LOST_AFTER))
    return aiohttp.ClientSession(middlewares=(_retry_lost_invocation,), **kwargs)


def prebuilt_functions(folder):
    """A folder to put first on `cargo lambda watch`'s PATH, whose `cargo` starts each function
    instance (`cargo run --release … --bin NAME`) from the release build the other tiers share,
    and passes every other command to cargo. `cargo run -p cloudify-lambda` alone resolves
    other dependency features than that build of the whole workspace, and would rebuild
    everything (minutes) on the first request. The build is made here when missing or stale."""
    release = os.path.join(ROOT, "target", "release")
    subprocess.run(["cargo", "build", "--release", "--workspace"], cwd=ROOT, check=True)
    cargo = shutil.which("cargo")
    shim = os.path.join(folder, "prebuilt")
    os.makedirs(shim, exist_ok=True)
    with open(os.path.join(shim, "cargo"), "w") as f:
        f.write(f"""#!/bin/sh
if [ "$1" = run ]; then
  while [ $# -gt 0 ]; do
    if [ "$1" = --bin ]; then exec "{release}/$2"; fi
    shift
  done
fi
exec "{cargo}" "$@"
""")
    os.chmod(os.path.join(shim, "cargo"), 0o755)
    return shim


class LambdaWatch:
    """`cargo lambda watch`: both functions of cloudify-lambda, the serving one behind an
    emulated Function URL at `{url}` (…/lambda-url/cloudify-serve). Up to INSTANCES, each
    taking one request at a time as on Lambda: with one, the emulator loses answers to
    concurrent requests (xarray makes many)."""

    def __init__(self, endpoint, env_file, settings, first_request=True):
        with open(env_file, "w") as f:
            for k, v in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint,
                         "CLOUDIFY_S3_TIMEOUT_MS": str(TIMEOUT_MS), **settings}.items():
                f.write(f"{k}={v}\n")
        self.port = free_port()
        # Release: the suite re-encodes thousands of chunks, which a debug build does slowly.
        cmd = [os.path.join(TOOLS, "cargo-lambda"), "lambda", "watch", "--release",
               "-p", "cloudify-lambda",
               "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port),
               "--ignore-changes", "--concurrency", str(INSTANCES),
               "--env-file", env_file]
        env = s3_env(endpoint)
        shim = prebuilt_functions(os.path.dirname(env_file))
        env["PATH"] = os.pathsep.join((shim, TOOLS, env["PATH"]))
        self.log = open(env_file + ".log", "w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        # Documents link to the host a request reached: here the emulator's, without the
        # `/lambda-url/NAME` prefix a real Function URL does not have.
        self.origin = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.origin}/lambda-url/cloudify-serve"
        if first_request:
            # The first request compiles the functions when needed, then starts one.
            wait_for(self.url + "/", seconds=600, ok=lambda r: r.status_code == 200)
            return
        # Only the emulator: the function process starts with the first request.
        deadline = time.time() + 60
        while not listening(self.port):
            if time.time() > deadline:
                raise TimeoutError("cargo lambda watch did not listen")
            time.sleep(0.05)

    def get(self, path, **kw):
        """GET on the function URL, asking again after a lost invocation: a 500 that is not
        the core's, or no answer at all (the emulator once held a request no instance took)."""
        for _ in range(TRIES - 1):
            try:
                r = requests.get(self.url + path, timeout=LOST_AFTER, **kw)
            except requests.exceptions.ReadTimeout:
                continue
            if not lost_invocation(r.status_code, r.content):
                return r
        return requests.get(self.url + path, timeout=LOST_AFTER, **kw)

    # fsspec's HTTP client for xarray on the function URL (`storage_options=`): it asks again
    # after a lost invocation, as `get` does.
    storage_options = {"get_client": retrying_client}

    def start_every_instance(self, slow_path):
        """Start all INSTANCES with as many concurrent requests that each keep one busy (a
        `slow_path` read): the emulator may lose an answer while it starts an instance, with
        a 500 the core never gives, so the tests should not meet a start."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(INSTANCES) as pool:
            for _ in range(2):
                list(pool.map(lambda _: self.get(slow_path), range(INSTANCES)))

    def invoke(self, function, event_file):
        """`cargo lambda invoke`: the function's answer, as JSON."""
        import json

        out = subprocess.run(
            [os.path.join(TOOLS, "cargo-lambda"), "lambda", "invoke", function,
             "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port),
             "--data-file", event_file, "--output-format", "json"],
            cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)

    def stop(self):
        stop(self.proc)
        self.log.close()

    def panics(self):
        """Lines of the emulator's log (the functions' output) that report a panic."""
        with open(self.log.name, errors="replace") as f:
            return [line for line in f if "panicked at" in line]


if __name__ == "__main__" and sys.argv[1:2] == ["proxy"]:
    serve_proxy(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
