"""The serving Lambda, emulated by `cargo lambda watch --release` over moto's S3 server, against
`cloudify serve --bucket s3://...` on the same bucket, in one run.

1. Start: from starting the function's first instance (the emulator's first request, retried
   until answered: `cargo lambda watch` can lose the request that starts an instance, so this
   is an upper bound) to a `/` answer, then the first chunk of a fresh instance (S3 client,
   `index.json`, manifest, table record, source range) against the median of the next 20
   requests of the same chunk, and `cloudify serve --bucket s3://...` started and asked for
   the same chunk.
2. Peak memory (VmHWM) of each process after answering every `/kerchunk` and `/zarr` key of a
   730x180x360 float32 dataset (30-step zlib+shuffle source chunks, 7.8 MB decoded each,
   served in 10-step chunks).
3. Size of the arm64 bootstraps `cargo lambda build --release --arm64` made, when present.

Run: scripts/test lambda (or: cargo build --release -p cloudify -p cloudify-lambda), then
     .venv/bin/python bench/bench_lambda.py
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
for sub in ("tests/lambda", "tests/python", "bench"):
    sys.path.insert(0, os.path.join(ROOT, sub))
os.environ.setdefault("CLOUDIFY_BIN", os.path.join(ROOT, "target", "release", "cloudify"))

from aws import LambdaWatch, Moto, s3_env  # noqa: E402
from bench_kerchunk import big_file  # noqa: E402
from servers import Server, binary, view_keys  # noqa: E402

BUCKET, PREFIX = "bench", "idx"
CHUNK = "/datasets/big/zarr/tas/0.0.0"


def peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def timed(url):
    t0 = time.perf_counter()
    r = requests.get(url, timeout=120)
    assert r.status_code == 200, (url, r.status_code, r.text[:200])
    return time.perf_counter() - t0


def main():
    cloudify = binary()
    moto = Moto()
    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "sources"))
        src = big_file(os.path.join(root, "sources", "big.nc"))
        # Served in 10-step chunks (2.6 MB decoded): a buffered Function URL answer, which the
        # emulator, like Lambda, limits to 6 MB of base64.
        subprocess.run([cloudify, "index", "--bucket", root, "--dataset", "big", src,
                        "--chunks", "time=10"],
                       check=True, capture_output=True)
        for base, _, files in os.walk(root):
            for name in files:
                path = os.path.join(base, name)
                s3.upload_file(path, BUCKET, f"{PREFIX}/{os.path.relpath(path, root)}")
        settings = {"BUCKET": BUCKET, "INDEX_PREFIX": PREFIX, "READ_BUDGET_BYTES": str(64 << 20)}
        # Compile (when needed) and stop, so the measured start is the function's alone.
        LambdaWatch(moto.url, os.path.join(root, "warmup.env"), settings).stop()
        t0 = time.perf_counter()
        lam = LambdaWatch(moto.url, os.path.join(root, "fn.env"), settings)
        started = time.perf_counter() - t0
        cold = timed(lam.url + CHUNK)
        warm = statistics.median(timed(lam.url + CHUNK) for _ in range(20))
        pid = int(subprocess.check_output(["pgrep", "-n", "-f", "release/cloudify-serve"]))
        t0 = time.perf_counter()
        native = Server(cloudify, f"s3://{BUCKET}/{PREFIX}", "--read-budget", str(64 << 20),
                        env=s3_env(moto.url))
        timed(native.url + CHUNK)
        native_cold = time.perf_counter() - t0
        for view in ("kerchunk", "zarr"):
            for p in view_keys(native, "big", view):
                lam.get(p)
                native.get(p)
        lam_peak, native_peak = peak_kib(pid), peak_kib(native.proc.pid)
        lam.stop()
        native.stop()
    moto.stop()
    print(f"emulator and first instance started, `/` answered:   {started * 1000:.0f} ms")
    print(f"first chunk of the fresh instance:                    {cold * 1000:.0f} ms")
    print(f"warm, the same chunk (median of 20):                  {warm * 1000:.1f} ms")
    print(f"cloudify serve --bucket s3://, start to first chunk:  {native_cold * 1000:.0f} ms")
    print(f"peak memory (VmHWM): function {lam_peak / 1024:.1f} MiB, "
          f"cloudify serve {native_peak / 1024:.1f} MiB")
    for fn in ("cloudify-serve", "cloudify-reindex"):
        path = os.path.join(ROOT, "target", "arm64", "lambda", fn, "bootstrap")
        if os.path.exists(path):
            print(f"arm64 bootstrap {fn}: {os.path.getsize(path) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
