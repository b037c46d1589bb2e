"""The core reshape, before and after, in one run: the Worker bundle, the Lambda bootstrap's
size and cold start, and xarray's full load through `/zarr`.

`BEFORE` is a checkout of the commit before the reshape, built the same way as this one:

    git worktree add ../before 3540e29
    (cd ../before && cargo build --release -p cloudify -p cloudify-lambda \
        && ln -sfn "$PWD/../main/node_modules" node_modules && scripts/worker-build)
    cargo build --release -p cloudify -p cloudify-lambda && scripts/worker-build
    .venv/bin/python bench/bench_reshape.py ../before

1. Worker bundle: the gzip-compressed size of what `wrangler deploy` uploads (the wasm module
   and its JavaScript shim, `functions/worker/build/`), the figure the plans' limits apply to.
2. Lambda bootstrap (`cloudify-serve`, x86_64 release build): its size, and from process start
   to the first answer behind an emulated Runtime API over moto's S3 (median of five fresh
   processes), for a chunk and for `.zmetadata`.
3. xarray full load (`.load()`) through `/zarr` of the 730x180x360 float32 dataset
   (zlib+shuffle source chunks of 30 steps), each binary serving the bucket it indexed; the
   peer is xarray with netCDF4 on the local file. Rounds alternate before/after/peer; median of
   three.
"""
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import xarray as xr

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
for sub in ("tests/lambda", "tests/python", "bench"):
    sys.path.insert(0, os.path.join(ROOT, sub))

from aws import Moto, s3_env  # noqa: E402
from bench_kerchunk import big_file  # noqa: E402
from runtime_api import RuntimeApi  # noqa: E402
from servers import Server  # noqa: E402

ORIGIN = "http://bench.lambda-url.us-east-1.on.aws"
ROUNDS = 3


def bundle_kib(checkout):
    """gzip -9 of every file `wrangler deploy` uploads from `functions/worker/build/`."""
    total = 0
    build = os.path.join(checkout, "functions", "worker", "build")
    for base, _, files in os.walk(build):
        for name in files:
            if name.endswith((".wasm", ".js", ".mjs")):
                with open(os.path.join(base, name), "rb") as f:
                    total += len(gzip.compress(f.read(), 9))
    return total / 1024


def index(cloudify, bucket, *args):
    subprocess.run([cloudify, "index", "--bucket", bucket, *args], check=True,
                   capture_output=True)


def cold_starts(bootstrap, env, path):
    times = []
    for _ in range(5):
        fn = RuntimeApi(bootstrap, env)
        status, _, _ = fn.get(ORIGIN + path)
        assert status == 200, (bootstrap, path, status)
        times.append(time.perf_counter() - fn.started)
        fn.stop()
    return times


def lambda_cold(checkouts, big):
    moto = Moto()
    s3 = moto.client()
    out = {}
    try:
        for label, checkout in checkouts.items():
            bucket_name = f"bench-{label}"
            s3.create_bucket(Bucket=bucket_name)
            with tempfile.TemporaryDirectory() as root:
                os.makedirs(os.path.join(root, "sources"))
                src = os.path.join(root, "sources", "big.nc")
                shutil.copyfile(big, src)
                cloudify = os.path.join(checkout, "target", "release", "cloudify")
                index(cloudify, root, "--dataset", "big", src, "--chunks", "time=10")
                for base, _, files in os.walk(root):
                    for name in files:
                        path = os.path.join(base, name)
                        s3.upload_file(path, bucket_name, f"idx/{os.path.relpath(path, root)}")
            env = s3_env(moto.url, BUCKET=bucket_name, INDEX_PREFIX="idx")
            bootstrap = os.path.join(checkout, "target", "release", "cloudify-serve")
            out[label] = {
                "size": os.path.getsize(bootstrap) / 1e6,
                "chunk": cold_starts(bootstrap, env, "/datasets/big/zarr/tas/0.0.0"),
                "metadata": cold_starts(bootstrap, env, "/datasets/big/zarr/.zmetadata"),
            }
    finally:
        moto.stop()
    return out


def full_loads(checkouts, big):
    with xr.open_dataset(big, engine="netcdf4") as ds:
        expected = ds.tas.load().values
    buckets, servers, times = {}, {}, {label: [] for label in [*checkouts, "peer"]}
    try:
        for label, checkout in checkouts.items():
            cloudify = os.path.join(checkout, "target", "release", "cloudify")
            buckets[label] = tempfile.mkdtemp()
            index(cloudify, buckets[label], "--dataset", "big", big)
            servers[label] = Server(cloudify, buckets[label])
        for _ in range(ROUNDS):
            for label, server in servers.items():
                t0 = time.perf_counter()
                with xr.open_dataset(f"{server.url}/datasets/big/zarr", engine="zarr",
                                     zarr_format=2, consolidated=True) as ds:
                    values = ds.tas.load().values
                times[label].append(time.perf_counter() - t0)
                assert np.array_equal(values, expected), label
            t0 = time.perf_counter()
            with xr.open_dataset(big, engine="netcdf4") as ds:
                ds.tas.load()
            times["peer"].append(time.perf_counter() - t0)
    finally:
        for s in servers.values():
            s.stop()
    return times


def runs(seconds, unit=1.0, fmt="{:.2f}"):
    text = ", ".join(fmt.format(s * unit) for s in seconds)
    return f"{fmt.format(statistics.median(seconds) * unit)} (runs: {text})"


def main():
    before = os.path.abspath(sys.argv[1])
    checkouts = {"before": before, "after": ROOT}
    big = big_file(os.path.join(ROOT, "bench", "out", "tas_730x180x360.nc"))
    for label, checkout in checkouts.items():
        print(f"Worker bundle, {label}: {bundle_kib(checkout):.0f} KiB gzip")
    for label, r in lambda_cold(checkouts, big).items():
        print(f"Lambda cloudify-serve, {label}: {r['size']:.2f} MB (x86_64); process start to "
              f"a 10-step chunk {runs(r['chunk'], 1000, '{:.0f}')} ms, to .zmetadata "
              f"{runs(r['metadata'], 1000, '{:.0f}')} ms")
    for label, seconds in full_loads(checkouts, big).items():
        name = "xarray netCDF4, local file (peer)" if label == "peer" else f"/zarr, {label}"
        print(f"xarray full load, 730x180x360 float32: {name}: {runs(seconds)} s")


if __name__ == "__main__":
    main()
