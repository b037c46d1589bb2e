"""`wrangler dev` over wrangler's local R2, for the Worker's tests and benchmark."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from servers import ROOT  # noqa: E402

WRANGLER = os.path.join(ROOT, "node_modules", ".bin", "wrangler")
R2_BUCKET = "cloudify"
# The fault tests need a read budget small enough to exceed; both servers get the same one.
READ_BUDGET = 8 << 20


def wrangler_env(state):
    env = dict(os.environ)
    env.update(WRANGLER_SEND_METRICS="false", WRANGLER_SEND_ERROR_REPORTS="false",
               WRANGLER_HIDE_BANNER="true", CLOUDFLARE_CF_FETCH_ENABLED="false",
               XDG_CONFIG_HOME=os.path.join(state, "config"), NO_COLOR="1", CI="1")
    return env


def dev_config(state):
    """wrangler.toml without [build]: the Worker is built once, before the tests, and
    `wrangler dev` would otherwise build it again."""
    with open(os.path.join(ROOT, "wrangler.toml")) as f:
        text = f.read()
    text = re.sub(r"\n\[build\]\n[^\[]*", "\n", text)
    text = text.replace('main = "functions/', f'main = "{ROOT}/functions/')
    path = os.path.join(state, "wrangler.toml")
    # `wrangler dev` watches this file: rewriting it (for every `wrangler r2` command) reloads
    # the server, which can read it half-written and stop. Write it once.
    written = None
    if os.path.exists(path):
        with open(path) as f:
            written = f.read()
    if written != text:
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    return path


class Wrangler:
    """`wrangler dev` on a free loopback port, over local R2 state in `state`."""

    def __init__(self, state, extra_vars=(f"READ_BUDGET_BYTES:{READ_BUDGET}",)):
        self.state = state
        self.env = wrangler_env(state)
        self.config = dev_config(state)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        args = [WRANGLER, "dev", "-c", self.config, "--ip", "127.0.0.1", "--port", str(port),
                "--persist-to", os.path.join(state, "r2"), "--log-level", "log"]
        for v in extra_vars:
            args += ["--var", v]
        self.log = open(os.path.join(state, f"dev-{port}.log"), "w")
        self.proc = subprocess.Popen(args, cwd=state, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                t0 = time.perf_counter()
                if requests.get(self.url + "/", timeout=30).status_code == 200:
                    # The isolate's first request: it instantiates the wasm module.
                    self.first_ms = (time.perf_counter() - t0) * 1000
                    break
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                with open(self.log.name) as f:
                    raise RuntimeError(f"wrangler dev did not start:\n{f.read()[-3000:]}")
            time.sleep(0.25)

    def get(self, path, **kw):
        return requests.get(self.url + path, timeout=60, **kw)

    def put(self, key, path):
        """One object into local R2, as a user would: `wrangler r2 object put --local`."""
        subprocess.run([WRANGLER, "r2", "object", "put", f"{R2_BUCKET}/{key}", "--file", path,
                        "--local", "--persist-to", os.path.join(self.state, "r2"),
                        "-c", self.config], cwd=self.state, env=self.env, check=True,
                       capture_output=True)

    def delete(self, key):
        subprocess.run([WRANGLER, "r2", "object", "delete", f"{R2_BUCKET}/{key}", "--local",
                        "--persist-to", os.path.join(self.state, "r2"), "-c", self.config],
                       cwd=self.state, env=self.env, check=True, capture_output=True)

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def bulk_put(state, pairs):
    """Objects `{key: file}` into local R2 in one `wrangler r2 bulk put --local`."""
    listing = os.path.join(state, "objects.json")
    with open(listing, "w") as f:
        json.dump([{"key": k, "file": v} for k, v in pairs.items()], f)
    subprocess.run([WRANGLER, "r2", "bulk", "put", R2_BUCKET, "--filename", listing, "--local",
                    "--persist-to", os.path.join(state, "r2"), "-c", dev_config(state)],
                   cwd=state, env=wrangler_env(state), check=True, capture_output=True)


def load_bucket(bucket, state):
    """Every object of the bucket folder into local R2, under its key in the folder."""
    pairs = {}
    for base, _, files in os.walk(bucket):
        for name in files:
            path = os.path.join(base, name)
            pairs[os.path.relpath(path, bucket)] = path
    bulk_put(state, pairs)


def write_big(path):
    """9.6 MB of float64 in 800 kB source chunks: served as one chunk it is over the budget."""
    import netCDF4
    import numpy as np

    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("t", 1200)
        nc.createDimension("x", 1000)
        v = nc.createVariable("values", "f8", ("t", "x"), chunksizes=(100, 1000))
        v[:] = np.arange(1200 * 1000, dtype="f8").reshape(1200, 1000)
    return path
