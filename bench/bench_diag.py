"""The monthly-mean groupby of the synthetic 730x180x360 float32 dataset (30-step zlib+shuffle
chunks, 189 MB decoded), computed three ways in one run:

1. by the function: `GET /datasets/big/groupby/tas/time.month/mean/zarr/...` on `cloudify
   serve` (the same handler as the Lambda and the Worker), opened with xarray: the result's
   one chunk is computed on the server from the source chunks;
2. client-side: xarray + dask over the function's `/zarr` (what a user does without the
   diagnostic routes: every chunk travels);
3. xarray on the local file (netCDF4), no network.

Each is timed three times (median), and the results are compared. The server's peak memory
(VmHWM) after its groupbys is printed beside the data size.

Run: cargo build --release -p cloudify && .venv/bin/python bench/bench_diag.py
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import xarray as xr

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
os.environ.setdefault("CLOUDIFY_BIN", os.path.join(ROOT, "target", "release", "cloudify"))

from bench_kerchunk import big_file  # noqa: E402
from servers import Server, binary  # noqa: E402

ROUTE = "/datasets/big/groupby/tas/time.month/mean"


def peak_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def timed(f, runs=3):
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    cloudify = binary()
    cache = os.path.join(ROOT, "bench", "out")
    os.makedirs(cache, exist_ok=True)
    src = big_file(os.path.join(cache, "big.nc"))
    with tempfile.TemporaryDirectory() as bucket:
        subprocess.run([cloudify, "index", "--bucket", bucket, "--dataset", "big", src],
                       check=True, capture_output=True)
        server = Server(cloudify, bucket, "--read-budget", str(512 << 20))
        try:
            def function():
                with xr.open_dataset(f"{server.url}{ROUTE}/zarr", engine="zarr") as ds:
                    return ds.tas.load()

            def client():
                with xr.open_dataset(f"{server.url}/datasets/big/zarr", engine="zarr",
                                     chunks={}) as ds:
                    return ds.tas.groupby("time.month").mean().compute()

            def local():
                with xr.open_dataset(src) as ds:
                    return ds.tas.groupby("time.month").mean().compute()

            t_fn, by_fn = timed(function)
            peak = peak_mib(server.proc.pid)
            t_client, by_client = timed(client)
            t_local, by_local = timed(local)
        finally:
            server.stop()
    for name, other in (("client", by_client), ("local", by_local)):
        np.testing.assert_allclose(by_fn.transpose(*other.dims).values, other.values,
                                   rtol=1e-5, err_msg=name)
    print("monthly mean of tas (730x180x360 float32, 30-step zlib+shuffle chunks)")
    print(f"  function (cloudify serve, result as Zarr): {t_fn:.2f} s, peak memory {peak:.0f} MiB")
    print(f"  xarray + dask over /zarr (client side):    {t_client:.2f} s")
    print(f"  xarray on the local file (netCDF4):        {t_local:.2f} s")


if __name__ == "__main__":
    main()
