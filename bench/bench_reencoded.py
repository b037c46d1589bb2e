"""Benchmarks of the re-encoding routes, each measured in one run beside its peers.

1. xarray full load (`.load()`, median of five interleaved rounds) of a 730x180x360 float32
   zlib+shuffle dataset: through `cloudify serve` on `/zarr` (v2) and `/zarr3` (v3): the
   default codec auto (the source's chunks passed through; on a `--chunks time=10` grid,
   re-encoded with zstd:-5), zlib:1 / gzip:1, zstd:1, zstd:3 and none, against xpublish with xpublish-zarr
   serving the same file (v3), `/kerchunk`, and xarray reading the local file with netCDF4.
   Each round starts every server afresh, so none answers from the last round's cache.
2. Store reads per served chunk with and without merging touching ranges: the test suite's
   `many_chunks.nc` (120x400 float32 in zlib chunks of 2x20, written in order) served in chunks
   of 10x100, so each served chunk spans 25 source chunks; reads counted from `Server-Timing`
   (one of them is the chunk-table read).

Run: cargo build --release -p cloudify && .venv/bin/python bench/bench_reencoded.py
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import requests
import xarray as xr

sys.path.insert(0, os.path.dirname(__file__))
from bench_kerchunk import BIN, ROOT, big_file  # noqa: E402


def serve(bucket, *extra, binary=BIN):
    proc = subprocess.Popen([binary, "serve", "--bucket", bucket, "--addr", "127.0.0.1:0", *extra],
                            stdout=subprocess.PIPE, text=True)
    return proc, re.search(r"http://[0-9.:]+", proc.stdout.readline()).group(0)


def load(url, **kw):
    t0 = time.perf_counter()
    with xr.open_dataset(url, engine="zarr", **kw) as ds:
        values = ds.tas.load().values
    return time.perf_counter() - t0, values


def xpublish(path, port, dask):
    """xpublish serving the file in its own chunks: opened with dask (`chunks={}`, a dask
    chunk per file chunk) or without (xarray's lazy array, which the first chunk asked for
    reads whole)."""
    code = ("import sys, xarray as xr, xpublish; "
            "ds = xr.open_dataset(sys.argv[1], chunks={} if sys.argv[3] == 'dask' else None); "
            "xpublish.Rest({'big': ds}).serve("
            "host='127.0.0.1', port=int(sys.argv[2]), log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code, path, str(port),
                             "dask" if dask else "lazy"])
    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{port}/datasets/big/zarr/zarr.json", timeout=60)
            return proc
        except requests.ConnectionError:  # not listening yet
            time.sleep(0.2)
    raise RuntimeError("xpublish did not start")


# Each row's time is the median of this many rounds, the rounds interleaved across rows.
ROUNDS = 5


# The cloudify rows: name, dataset, route, xarray's arguments.
ROWS = [
    ("cloudify /zarr (v2, auto: source chunks passed through)", "big", "zarr", {"zarr_format": 2}),
    ("cloudify /zarr3 (v3, auto: source chunks passed through)", "big", "zarr3",
     {"zarr_format": 3}),
    ("cloudify /zarr (v2, auto, --chunks time=10: re-encoded, zstd:-5)", "big10", "zarr",
     {"zarr_format": 2}),
    ("cloudify /zarr3 (v3, auto, --chunks time=10: re-encoded, zstd:-5)", "big10", "zarr3",
     {"zarr_format": 3}),
    ("cloudify /zarr (v2, zlib:1)", "bigzlib", "zarr", {"zarr_format": 2}),
    ("cloudify /zarr (v2, --codec none)", "bignone", "zarr", {"zarr_format": 2}),
    ("cloudify /zarr (v2, zstd:1)", "bigz1", "zarr", {"zarr_format": 2}),
    ("cloudify /zarr3 (v3, gzip:1)", "bigzlib", "zarr3", {"zarr_format": 3}),
    ("cloudify /zarr3 (v3, zstd:3)", "bigz", "zarr3", {"zarr_format": 3}),
    ("cloudify /kerchunk (source chunks)", "big", "kerchunk", {}),
]


def bench_load(path):
    results = {}
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        with xr.open_dataset(path, engine="netcdf4") as ds:
            expected = ds.tas.load().values
        results.setdefault("xarray netCDF4, local file", []).append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as bucket:
        for ds, opts in [("big", []), ("bigzlib", ["--codec", "zlib:1"]),
                         ("bigz", ["--codec", "zstd:3"]), ("big10", ["--chunks", "time=10"]),
                         ("bignone", ["--codec", "none"]), ("bigz1", ["--codec", "zstd:1"])]:
            subprocess.run([BIN, "index", "--bucket", bucket, "--dataset", ds, *opts, path],
                           check=True, capture_output=True)
        for _ in range(ROUNDS):
            # Each round on a fresh server and a fresh xpublish: neither answers from a cache
            # the previous round filled (xpublish keeps the chunks it encoded).
            proc, url = serve(bucket)
            try:
                for name, ds, view, kw in ROWS:
                    seconds, values = load(f"{url}/datasets/{ds}/{view}", consolidated=True, **kw)
                    assert np.array_equal(values, expected)
                    results.setdefault(name, []).append(seconds)
            finally:
                proc.terminate()
                proc.wait()
            for dask in (True, False):
                proc = xpublish(path, 8411, dask)
                try:
                    seconds, values = load("http://127.0.0.1:8411/datasets/big/zarr",
                                           zarr_format=3, consolidated=True)
                    assert np.array_equal(values, expected)
                    opened = "chunks={}, dask" if dask else "no dask: the variable read whole"
                    results.setdefault(f"xpublish + xpublish-zarr (v3, zstd:3; {opened})",
                                       []).append(seconds)
                finally:
                    proc.terminate()
                    proc.wait()
    return {name: statistics.median(times) for name, times in results.items()}


def bench_reads(path):
    with tempfile.TemporaryDirectory() as bucket:
        subprocess.run([BIN, "index", "--bucket", bucket, "--dataset", "s", "--chunks",
                        "time=10,cell=100", path], check=True, capture_output=True)
        counts = {}
        for label, extra in [("merged (default)", []), ("not merged (--merge-cap 0)", ["--merge-cap", "0"])]:
            proc, url = serve(bucket, *extra)
            try:
                meta = requests.get(f"{url}/datasets/s/zarr/.zmetadata").json()["metadata"]
                var = "values"
                grid = [-(-s // c) for s, c in zip(meta[f"{var}/.zarray"]["shape"], meta[f"{var}/.zarray"]["chunks"])]
                reads = []
                for t in range(grid[0]):
                    for c in range(grid[1]):
                        r = requests.get(f"{url}/datasets/s/zarr/{var}/{t}.{c}")
                        reads.append(int(re.search(r"(\d+) store reads", r.headers["server-timing"]).group(1)))
                counts[label] = (var, meta[f"{var}/.zarray"]["shape"], np.mean(reads))
            finally:
                proc.terminate()
                proc.wait()
        return counts


def main():
    big = big_file(os.path.join(ROOT, "bench", "out", "tas_730x180x360.nc"))
    for name, seconds in bench_load(big).items():
        print(f"xarray full load, 730x180x360 float32: {name}: {seconds:.2f} s")
    sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
    import make_files

    sample = os.path.join(ROOT, "bench", "out", "many_chunks.nc")
    make_files.GENERATORS["many_chunks"](sample)
    for label, (var, shape, mean) in bench_reads(sample).items():
        print(f"store reads per served chunk, many_chunks {var}{shape}, 2x20 source chunks served "
              f"as 10x100: {label}: {mean:.1f}")


if __name__ == "__main__":
    main()
