"""Benchmarks of the raw route against kerchunk, each pair measured in one run.

1. Indexing time per file: `cloudify index` (release binary, one process per file, so process
   start-up is included) against kerchunk's `SingleHdf5ToZarr(...).translate()` in-process, over
   the NetCDF4 files of esmvaltool-sample-data and a large generated file.
2. xarray full load (`.load()`) of the largest test dataset, a 730x180x360 float32 zlib+shuffle
   field: through `cloudify serve` (`/kerchunk`) against fsspec's reference filesystem reading
   kerchunk's references and the file from local disk.

Run: cargo build --release -p cloudify && .venv/bin/python bench/bench_kerchunk.py
"""
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(ROOT, "target", "release", "cloudify")


def big_file(path):
    import netCDF4

    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(0)
    nt, ny, nx = 730, 180, 360
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", ny)
        nc.createDimension("lon", nx)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "days since 2000-01-01"
        t[:] = np.arange(nt)
        nc.createVariable("lat", "f4", ("lat",))[:] = np.linspace(-89.5, 89.5, ny)
        nc.createVariable("lon", "f4", ("lon",))[:] = np.linspace(0.5, 359.5, nx)
        v = nc.createVariable("tas", "f4", ("time", "lat", "lon"), zlib=True, shuffle=True,
                              chunksizes=(30, 180, 360))
        v.units = "K"
        base = 280 + 20 * np.cos(np.deg2rad(np.linspace(-89.5, 89.5, ny)))[:, None]
        for i in range(0, nt, 30):
            n = min(30, nt - i)
            v[i:i + n] = np.round(base + rng.normal(0, 2, (n, ny, nx)), 2).astype("f4")
    return path


def bench_index(files):
    from kerchunk.hdf import SingleHdf5ToZarr

    with tempfile.TemporaryDirectory() as bucket:
        t0 = time.perf_counter()
        for i, f in enumerate(files):
            subprocess.run([BIN, "index", "--bucket", bucket, "--dataset", f"d{i}", f],
                           check=True, capture_output=True)
        ours = (time.perf_counter() - t0) / len(files)
    t0 = time.perf_counter()
    for f in files:
        SingleHdf5ToZarr(f, inline_threshold=0).translate()
    theirs = (time.perf_counter() - t0) / len(files)
    return ours, theirs


def bench_load(path):
    import xarray as xr
    from kerchunk.hdf import SingleHdf5ToZarr

    with tempfile.TemporaryDirectory() as bucket:
        subprocess.run([BIN, "index", "--bucket", bucket, "--dataset", "big", path],
                       check=True, capture_output=True)
        proc = subprocess.Popen([BIN, "serve", "--bucket", bucket, "--addr", "127.0.0.1:0"],
                                stdout=subprocess.PIPE, text=True)
        url = re.search(r"http://[0-9.:]+", proc.stdout.readline()).group(0)
        try:
            timings = {}
            t0 = time.perf_counter()
            with xr.open_dataset(f"{url}/datasets/big/kerchunk", engine="zarr") as ds:
                ours = ds.load()
            timings["cloudify serve /kerchunk"] = time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait()
    refs = SingleHdf5ToZarr(path, inline_threshold=0).translate()
    t0 = time.perf_counter()
    with xr.open_dataset("reference://", engine="zarr", consolidated=False, zarr_format=2,
                         backend_kwargs={"storage_options": {"fo": refs, "remote_protocol": "file"}}) as ds:
        theirs = ds.load()
    timings["fsspec reference:// on local disk"] = time.perf_counter() - t0
    assert np.array_equal(ours.tas.values, theirs.tas.values)
    return timings


def main():
    import esmvaltool_sample_data

    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release -p cloudify")
    out = os.path.join(ROOT, "bench", "out")
    os.makedirs(out, exist_ok=True)
    big = big_file(os.path.join(out, "tas_730x180x360.nc"))
    base = os.path.dirname(esmvaltool_sample_data.__file__)
    samples = sorted(glob.glob(os.path.join(base, "**", "*.nc"), recursive=True))
    ours, theirs = bench_index(samples)
    print(f"index, {len(samples)} esmvaltool sample files: cloudify {ours * 1e3:.1f} ms/file, "
          f"kerchunk {theirs * 1e3:.1f} ms/file")
    ours, theirs = bench_index([big] * 5)
    print(f"index, 730x180x360 file (25 chunks): cloudify {ours * 1e3:.1f} ms/file, "
          f"kerchunk {theirs * 1e3:.1f} ms/file")
    size = os.path.getsize(big) / 1e6
    for name, seconds in bench_load(big).items():
        print(f"xarray full load of {size:.0f} MB file (189 MB decoded): {name}: {seconds:.2f} s")


if __name__ == "__main__":
    main()
