"""The serving Lambda's bootstrap over moto's S3 server, behind an emulated Runtime API
(`runtime_api.py`), against `cloudify serve --bucket s3://...` on the same bucket, in one run.

1. Cold start: from starting the bootstrap process to the first chunk served (S3 client,
   `index.json`, manifest, table record, source range, re-encoding), median of five fresh
   processes, against the median of the next 20 requests of the same chunk, and
   `cloudify serve --bucket s3://...` started and asked for the same chunk.
2. Peak memory (VmHWM) of each process after answering every `/kerchunk` and `/zarr` key of a
   730x180x360 float32 dataset (30-step zlib+shuffle source chunks, 7.8 MB decoded each,
   served in 10-step chunks so each answer fits a buffered Function URL).
3. Size of the arm64 bootstraps `cargo lambda build --release --arm64` made, when present.

Run: cargo build --release -p cloudify -p cloudify-lambda && .venv/bin/python bench/bench_lambda.py
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
for sub in ("tests/lambda", "tests/python", "bench"):
    sys.path.insert(0, os.path.join(ROOT, sub))
os.environ.setdefault("CLOUDIFY_BIN", os.path.join(ROOT, "target", "release", "cloudify"))

from aws import Moto, s3_env  # noqa: E402
from bench_kerchunk import big_file  # noqa: E402
from runtime_api import RuntimeApi  # noqa: E402
from servers import Server, binary, view_keys  # noqa: E402

BUCKET, PREFIX = "bench", "idx"
CHUNK = "/datasets/big/zarr/tas/0.0.0"
METADATA = "/datasets/big/zarr/.zmetadata"


def peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def timed(call):
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def ms(seconds):
    runs = ", ".join(f"{s * 1000:.0f}" for s in seconds)
    return f"{statistics.median(seconds) * 1000:.0f} ms (runs: {runs})"


def main():
    cloudify = binary()
    moto = Moto()
    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "sources"))
        src = big_file(os.path.join(root, "sources", "big.nc"))
        # Served in 10-step chunks (2.6 MB decoded): the function answers at most 4.4 MB, what
        # a buffered Function URL carries once base64-encoded.
        subprocess.run([cloudify, "index", "--bucket", root, "--dataset", "big", src,
                        "--chunks", "time=10"],
                       check=True, capture_output=True)
        for base, _, files in os.walk(root):
            for name in files:
                path = os.path.join(base, name)
                s3.upload_file(path, BUCKET, f"{PREFIX}/{os.path.relpath(path, root)}")
        env = s3_env(moto.url, BUCKET=BUCKET, INDEX_PREFIX=PREFIX,
                     READ_BUDGET_BYTES=str(64 << 20))
        bootstrap = os.path.join(ROOT, "target", "release", "cloudify-serve")
        origin = "http://bench.lambda-url.us-east-1.on.aws"
        starts, colds = [], {CHUNK: [], METADATA: []}
        for path, times in colds.items():
            for _ in range(5):
                fn = RuntimeApi(bootstrap, env)
                status, _, _ = fn.get(origin + path)
                assert status == 200, (path, status)
                times.append(time.perf_counter() - fn.started)
                starts.append(fn.first_poll - fn.started)
                fn.stop()
        fn = RuntimeApi(bootstrap, env)
        warm = {path: statistics.median(timed(lambda: fn.get(origin + path)) for _ in range(20))
                for path in colds}
        t0 = time.perf_counter()
        native = Server(cloudify, f"s3://{BUCKET}/{PREFIX}", "--read-budget", str(64 << 20),
                        env=s3_env(moto.url))
        assert native.get(CHUNK).status_code == 200
        native_cold = time.perf_counter() - t0
        native_warm = {path: statistics.median(timed(lambda: native.get(path)) for _ in range(20))
                       for path in colds}
        keys = 0
        for view in ("kerchunk", "zarr"):
            for p in view_keys(native, "big", view):
                status, _, body = fn.get(origin + p)
                r = native.get(p)
                assert status == r.status_code == 200, (p, status, r.status_code)
                assert body == r.content, p
                keys += 1
        fn_peak, native_peak = peak_kib(fn.proc.pid), peak_kib(native.proc.pid)
        fn.stop()
        native.stop()
    moto.stop()
    print(f"bootstrap started to first Runtime API poll: {ms(starts)}")
    for path, times in colds.items():
        print(f"{path}: bootstrap started to answer {ms(times)}; warm (median of 20) "
              f"{warm[path] * 1000:.1f} ms, cloudify serve warm {native_warm[path] * 1000:.1f} ms")
    print(f"cloudify serve --bucket s3://, process start to {CHUNK}: {native_cold * 1000:.0f} ms")
    print(f"peak memory (VmHWM) after {keys} keys: function {fn_peak / 1024:.1f} MiB, "
          f"cloudify serve {native_peak / 1024:.1f} MiB")
    for fn in ("cloudify-serve", "cloudify-reindex"):
        path = os.path.join(ROOT, "target", "arm64", "lambda", fn, "bootstrap")
        if os.path.exists(path):
            print(f"arm64 bootstrap {fn}: {os.path.getsize(path) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
