"""An archive in an object store, indexed from CI: cloudify against kerchunk on the same files.

N small CMIP6-style NetCDF4 files (`tas` 12x4x5, one year each, zlib), N/PER datasets of PER
years, in moto's S3 server behind the tests' fault proxy adding LATENCY ms to every request.
For N/10 and N files:

- `cloudify index --config` discovering them under the prefix (`[[discover]]`, grouped by
  name, concatenated along time) into an index bucket in the same server: a first run, then a
  rerun with nothing changed;
- kerchunk: `SingleHdf5ToZarr` per file through fsspec's HTTP filesystem (the objects public;
  chunks up to 16 KiB inlined, the coordinates among them), 32 files at a time, then
  `MultiZarrToZarr` per dataset, in a child process.

Each row: wall time, requests the proxy forwarded (by method) and the process's peak RSS
(VmHWM, sampled every 20 ms). Loopback only; files, servers and processes are removed after.

Run: cargo build --release -p cloudify && .venv/bin/python bench/bench_archive.py \
     [--files 10000] [--per 100] [--latency-ms 30]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path[:0] = [os.path.join(ROOT, "tests", "python"), os.path.join(ROOT, "tests", "lambda")]
BIN = os.environ.get("CLOUDIFY_BIN", os.path.join(ROOT, "target", "release", "cloudify"))
ARCHIVE, INDEX = "archive", "index"
PATTERN = "{variable}_{table}_{model}_{experiment}_{member}_{grid}_{period}.nc"


def name(model, year):
    return f"tas_Amon_M{model:04d}_historical_r1i1p1f1_gn_{year}01-{year}12.nc"


def write_files(folder, files, per):
    """`files` NetCDF4 files, `per` years of each model: returns their names."""
    import make_files

    names = []
    for i in range(files):
        model, year = divmod(i, per)
        names.append(name(model, 1850 + year))
        days = np.arange(12.0) * 30 + 365 * year
        make_files.model_piece(os.path.join(folder, names[-1]), days, chunks=(12, 4, 5), seed=i)
    return names


def peak_of(cmd, env=None):
    """Run `cmd`; its wall time and peak RSS in MiB (VmHWM, sampled)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while p.poll() is None:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.02)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{out[-2000:]}\n{err[-3000:]}")
    return wall, peak / 1024, out


def delta(before, after):
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(after) if after.get(k, 0) -
            before.get(k, 0)}


def kerchunk_child(urls_file):
    """In the child: kerchunk over the URLs (one JSON list per dataset)."""
    import fsspec
    from kerchunk.combine import MultiZarrToZarr
    from kerchunk.hdf import SingleHdf5ToZarr

    datasets = json.load(open(urls_file))
    fs = fsspec.filesystem("http")

    def single(url):
        with fs.open(url, "rb") as f:
            # Coordinate chunks inlined: MultiZarrToZarr reads time from the references (its
            # own fetch through fsspec's HTTP filesystem fails on zarr 3's event loop).
            return SingleHdf5ToZarr(f, url, inline_threshold=16384).translate()

    with ThreadPoolExecutor(32) as pool:
        for urls in datasets:
            singles = list(pool.map(single, urls))
            MultiZarrToZarr(singles, concat_dims=["time"],
                            identical_dims=["lat", "lon"]).translate()
    print(sum(len(u) for u in datasets))


def main():
    if sys.argv[1:2] == ["kerchunk"]:
        return kerchunk_child(sys.argv[2])
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--per", type=int, default=100)
    ap.add_argument("--latency-ms", type=float, default=30)
    args = ap.parse_args()
    from aws import FaultProxy, Moto, s3_env

    tmp = tempfile.mkdtemp(prefix="bench-archive-")
    moto = Moto()
    proxy = FaultProxy(moto.url, latency_ms=args.latency_ms)
    try:
        s3 = moto.client()
        t0 = time.perf_counter()
        names = write_files(tmp, args.files, args.per)
        made = time.perf_counter() - t0
        for sizes in sorted({args.files // 10, args.files}):
            bucket = f"{ARCHIVE}-{sizes}"
            s3.create_bucket(Bucket=bucket)
            s3.create_bucket(Bucket=f"{INDEX}-{sizes}")
            with ThreadPoolExecutor(32) as pool:
                list(pool.map(lambda n: s3.upload_file(os.path.join(tmp, n), bucket,
                                                       f"cmip6/{n}",
                                                       ExtraArgs={"ACL": "public-read"}),
                              names[:sizes]))
            config = os.path.join(tmp, f"cloudify-{sizes}.toml")
            with open(config, "w") as f:
                f.write(f'[[discover]]\nunder = "s3://{bucket}/cmip6/"\nfiles = "{PATTERN}"\n')
            # The S3 client's own time limit (the tests' is short, for their fault cases).
            env = s3_env(proxy.url, CLOUDIFY_S3_TIMEOUT_MS="20000")
            cmd = [BIN, "index", "--bucket", f"s3://{INDEX}-{sizes}", "--config", config]
            rows = []
            for run in ("first run", "unchanged rerun"):
                before = proxy.requests()
                wall, peak, out = peak_of(cmd, env)
                rows.append((f"cloudify index --config, {run}", wall, delta(before,
                                                                           proxy.requests()),
                             peak))
            registry = json.loads(s3.get_object(Bucket=f"{INDEX}-{sizes}",
                                                Key="index.json")["Body"].read())
            assert len(registry["datasets"]) == -(-sizes // args.per), registry.keys()
            urls = [[f"{proxy.url}/{bucket}/cmip6/{n}" for n in names[i:i + args.per]]
                    for i in range(0, sizes, args.per)]
            urls_file = os.path.join(tmp, f"urls-{sizes}.json")
            json.dump(urls, open(urls_file, "w"))
            before = proxy.requests()
            wall, peak, _ = peak_of([sys.executable, __file__, "kerchunk", urls_file])
            rows.append(("kerchunk SingleHdf5ToZarr + MultiZarrToZarr, 32 threads", wall,
                         delta(before, proxy.requests()), peak))
            print(f"\n{sizes} files, {len(urls)} datasets, {args.latency_ms:g} ms per request "
                  f"(files written in {made:.0f} s)")
            print("| run | wall (s) | requests | peak RSS (MiB) |\n|---|---|---|---|")
            for what, wall, reqs, peak in rows:
                total = sum(reqs.values())
                shown = ", ".join(f"{n} {m}" for m, n in reqs.items())
                print(f"| {what} | {wall:.1f} | {total} ({shown}) | {peak:.0f} |")
    finally:
        proxy.stop()
        moto.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
