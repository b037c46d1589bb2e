"""A cold chunk of an Icechunk-backed dataset: through the function (`cloudify serve` started
afresh, its first request) against Python icechunk reading the same chunk in a fresh process.

The repository is a native one xarray writes into an Icechunk session (.venv-ic): `tas`
(365, 180, 360) float32 in chunks of (30, 180, 360), zstd, made once. `cloudify index` reads
it as a source. Each round then times, from a process that has already started:
- cloudify: the first GET of chunk 1 through `/zarr3` (zstd passes through: the stored bytes)
  and through `/kerchunk`, each on a server just started (index.json, manifest, table and the
  chunk object read on that request); the bytes are checked against the repository's;
- icechunk: `Repository.open`, a read-only session on main and `tas[30:60]` (the chunk,
  decoded), in a fresh Python whose imports are not counted.
Medians of five rounds.

Run: cargo build --release -p cloudify && scripts/test py (which makes .venv and .venv-ic)
     && .venv/bin/python bench/bench_icechunk_read.py
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
os.environ.setdefault("CLOUDIFY_BIN", os.path.join(ROOT, "target", "release", "cloudify"))

from servers import Server, binary, index  # noqa: E402

PY_IC = os.path.join(ROOT, ".venv-ic", "bin", "python")
ROUNDS = 5

MAKE = """
import sys, icechunk, numpy as np, xarray as xr
data = np.random.default_rng(0).normal(280, 5, (365, 180, 360)).astype("f4")
ds = xr.Dataset({"tas": (("time", "lat", "lon"), data, {"units": "K"})},
                coords={"time": np.arange(365.0), "lat": np.linspace(-89.5, 89.5, 180),
                        "lon": np.arange(360.0)})
repo = icechunk.Repository.create(icechunk.local_filesystem_storage(sys.argv[1]))
session = repo.writable_session("main")
ds.to_zarr(session.store, zarr_format=3, consolidated=False,
           encoding={"tas": {"chunks": (30, 180, 360)}})
session.commit("tas")
"""

READ = """
import sys, time, icechunk, zarr
t0 = time.perf_counter()
repo = icechunk.Repository.open(icechunk.local_filesystem_storage(sys.argv[1]))
session = repo.readonly_session(branch="main")
values = zarr.open_array(session.store, path="tas", mode="r")[30:60]
print(time.perf_counter() - t0, values.nbytes)
"""


def cold_get(cloudify, bucket, path):
    """Seconds of the first GET of `path` on a server just started, and the body."""
    server = Server(cloudify, bucket)
    try:
        t0 = time.perf_counter()
        r = requests.get(server.url + path, timeout=60)
        took = time.perf_counter() - t0
        r.raise_for_status()
        return took, r.content
    finally:
        server.stop()


def main():
    cloudify = binary()
    with tempfile.TemporaryDirectory() as tmp:
        repo, bucket = os.path.join(tmp, "tas.icechunk"), os.path.join(tmp, "bucket")
        subprocess.run([PY_IC, "-c", MAKE, repo], check=True,
                       env=dict(os.environ, ICECHUNK_LOG="error"))
        index(cloudify, bucket, "ice", repo)
        # Every chunk object of the repository: each answer must be one of them, byte for byte.
        folder = os.path.join(repo, "chunks")
        objects = set()
        for name in os.listdir(folder):
            with open(os.path.join(folder, name), "rb") as f:
                objects.add(f.read())
        times = {"cloudify /zarr3 (stored bytes)": [], "cloudify /kerchunk": [],
                 "icechunk (decoded)": []}
        sizes = set()
        for _ in range(ROUNDS):
            for name, path in [("cloudify /zarr3 (stored bytes)", "/datasets/ice/zarr3/tas/c/1/0/0"),
                               ("cloudify /kerchunk", "/datasets/ice/kerchunk/tas/1.0.0")]:
                took, body = cold_get(cloudify, bucket, path)
                assert body in objects, f"{path}: not the stored chunk"
                times[name].append(took)
                sizes.add(len(body))
            out = subprocess.run([PY_IC, "-c", READ, repo], capture_output=True, text=True,
                                 check=True, env=dict(os.environ, ICECHUNK_LOG="error"))
            took, nbytes = out.stdout.split()
            times["icechunk (decoded)"].append(float(took))
        assert len(sizes) == 1, sizes
        print(f"chunk: {sizes.pop()} bytes stored, {int(nbytes)} decoded; medians of "
              f"{ROUNDS} cold rounds")
        for name, ts in times.items():
            print(f"| {name} | {statistics.median(ts) * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
