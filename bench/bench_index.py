"""The archive-scale indexer against kerchunk, and references at a million chunks, in one run.

1. Indexing the 65 yearly EC-Earth3 `ta` Amon files of esmvaltool-sample-data into one dataset
   concatenated along time: `cloudify index --concat-dim time` (one process, publishing
   included) against kerchunk's `SingleHdf5ToZarr` per file plus `MultiZarrToZarr` (in-process).
2. Bytes of references per chunk for a 1000x1000 grid of one-value chunks (1 000 000 chunks):
   cloudify's chunk table against kerchunk's JSON and its Parquet (`refs_to_dataframe`); and
   for a NetCDF4 file of that grid, `cloudify index`'s own kerchunk Parquet export against
   kerchunk's (`SingleHdf5ToZarr`, then `refs_to_dataframe`), both 100 000 rows per file.
3. Peak memory (VmHWM) serving that dataset: `cloudify serve` answering 2000 random chunk keys
   on a cold start, against a Python process opening kerchunk's JSON references with fsspec
   and reading the same keys.

Run: cargo build --release -p cloudify && .venv/bin/pip install -r bench/requirements.txt \
     && .venv/bin/python bench/bench_index.py
"""
import json
import os
import random
import struct
import zlib
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
os.environ.setdefault("CLOUDIFY_BIN", os.path.join(ROOT, "target", "release", "cloudify"))

from servers import Server, binary, sample_files  # noqa: E402

N = 1000  # the million-chunk grid is N x N


def ec_earth3():
    return sorted(p for p in sample_files() if "/EC-Earth3/" in p and "/Amon/ta/" in p)


def index_comparison(cloudify, tmp):
    files = ec_earth3()
    t0 = time.perf_counter()
    subprocess.run([cloudify, "index", "--bucket", os.path.join(tmp, "ec"), "--dataset", "ta",
                    "--concat-dim", "time", *files], check=True, capture_output=True)
    ours = time.perf_counter() - t0
    from kerchunk.combine import MultiZarrToZarr
    from kerchunk.hdf import SingleHdf5ToZarr

    t0 = time.perf_counter()
    singles = [SingleHdf5ToZarr(f, f).translate() for f in files]
    MultiZarrToZarr(singles, concat_dims=["time"], identical_dims=["lat", "lon", "plev"]).translate()
    peer = time.perf_counter() - t0
    print(f"index {len(files)} EC-Earth3 files: cloudify {ours:.2f} s, kerchunk {peer:.2f} s")


def million_chunk_bucket(tmp):
    """A bucket with one 1 000 000-chunk array, written directly in cloudify's format, and
    kerchunk references to the same bytes."""
    bucket = os.path.join(tmp, "million")
    version = "0" * 20
    folder = os.path.join(bucket, "datasets", "m", version)
    os.makedirs(os.path.join(folder, "tables"))
    source = os.path.join(bucket, "src.bin")
    with open(source, "wb") as f:
        f.write(struct.pack(f"<{N * N}f", *range(N * N)))
    with open(os.path.join(folder, "tables", "0.bin"), "wb") as f:
        f.write(b"CLDYTBL\0" + struct.pack("<II", 2, 28))
        for i in range(N * N):
            body = struct.pack("<IIQQ", 0, 0, 4 * i, 4)
            f.write(body + struct.pack("<I", zlib.crc32(struct.pack("<Q", i) + body)))
    manifest = {
        "format_version": 2, "id": "m", "attrs": {},
        "sources": [{"url": "src.bin", "size": 4 * N * N, "etag": None}],
        "arrays": {"v": {
            "shape": [N, N], "dims": ["y", "x"], "dtype": "<f4", "chunks": [1, 1],
            "served_chunks": [1, 1], "fill_value": None, "attrs": {}, "codecs": [],
            "table": "tables/0.bin", "records": N * N, "table_records": N * N,
            "stored_chunks": N * N}},
        "codec": {"name": "none"},
    }
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    with open(os.path.join(bucket, "index.json"), "w") as f:
        json.dump({"format_version": 1, "datasets": {"m": {"version": version}}}, f)
    refs = {".zgroup": json.dumps({"zarr_format": 2}),
            "v/.zarray": json.dumps({"shape": [N, N], "chunks": [1, 1], "dtype": "<f4",
                                     "compressor": None, "filters": None, "fill_value": None,
                                     "order": "C", "zarr_format": 2}),
            "v/.zattrs": json.dumps({"_ARRAY_DIMENSIONS": ["y", "x"]})}
    for i in range(N * N):
        refs[f"v/{i // N}.{i % N}"] = [source, 4 * i, 4]
    refs_path = os.path.join(tmp, "refs.json")
    with open(refs_path, "w") as f:
        json.dump({"version": 1, "refs": refs}, f)
    return bucket, folder, refs_path


def reference_sizes(folder, refs_path, tmp):
    from kerchunk.df import refs_to_dataframe

    table = os.path.getsize(os.path.join(folder, "tables", "0.bin"))
    manifest = os.path.getsize(os.path.join(folder, "manifest.json"))
    parquet = os.path.join(tmp, "refs.parq")
    refs_to_dataframe(refs_path, parquet)
    parq = sum(os.path.getsize(os.path.join(b, f)) for b, _, fs in os.walk(parquet) for f in fs)
    n = N * N
    print(f"bytes per chunk, {n} chunks: cloudify table {table / n:.1f} "
          f"(+ manifest {manifest} B), kerchunk JSON {os.path.getsize(refs_path) / n:.1f}, "
          f"kerchunk Parquet {parq / n:.1f}")


def parquet_exports(cloudify, tmp):
    """Index a NetCDF4 file of 1 000 000 one-value chunks; compare the Parquet references
    cloudify exports with kerchunk's of the same file."""
    import netCDF4
    import numpy as np
    from kerchunk.df import refs_to_dataframe
    from kerchunk.hdf import SingleHdf5ToZarr

    path = os.path.join(tmp, "million.nc")
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("y", N)
        nc.createDimension("x", N)
        v = nc.createVariable("v", "f4", ("y", "x"), chunksizes=(1, 1))
        v[:] = np.arange(N * N, dtype="f4").reshape(N, N)
    bucket = os.path.join(tmp, "million_nc")
    t0 = time.perf_counter()
    subprocess.run([cloudify, "index", "--bucket", bucket, "--dataset", "m", path], check=True,
                   capture_output=True)
    ours_s = time.perf_counter() - t0
    with open(os.path.join(bucket, "index.json")) as f:
        version = json.load(f)["datasets"]["m"]["version"]
    ours = os.path.join(bucket, "datasets", "m", version, "refs.parq")
    t0 = time.perf_counter()
    refs = SingleHdf5ToZarr(path, path).translate()
    peer_parquet = os.path.join(tmp, "kerchunk_million.parq")
    refs_to_dataframe(refs, peer_parquet)
    peer_s = time.perf_counter() - t0

    def size(folder):
        return sum(os.path.getsize(os.path.join(b, f)) for b, _, fs in os.walk(folder) for f in fs)

    n = N * N
    print(f"Parquet references of a NetCDF4 file of {n} chunks: cloudify index "
          f"{size(ours) / n:.2f} B per chunk ({ours_s:.1f} s, index and publish), kerchunk "
          f"{size(peer_parquet) / n:.2f} B per chunk ({peer_s:.1f} s, SingleHdf5ToZarr + "
          f"refs_to_dataframe)")


def hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


PEER = r"""
import fsspec, random, sys, resource
fs = fsspec.filesystem("reference", fo=sys.argv[1], remote_protocol="file")
m = fs.get_mapper("")
random.seed(1)
for _ in range(2000):
    i = random.randrange(int(sys.argv[2]) ** 2)
    m[f"v/{i // int(sys.argv[2])}.{i % int(sys.argv[2])}"]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_memory(cloudify, bucket, refs_path):
    server = Server(cloudify, bucket)
    try:
        random.seed(1)
        for _ in range(2000):
            i = random.randrange(N * N)
            r = server.get(f"/datasets/m/kerchunk/v/{i // N}.{i % N}")
            assert r.status_code == 200 and len(r.content) == 4
        ours = hwm_kib(server.proc.pid)
    finally:
        server.stop()
    peer = int(subprocess.run([sys.executable, "-c", PEER, refs_path, str(N)], check=True,
                              capture_output=True, text=True).stdout)
    print(f"peak memory serving 2000 random keys of 1 000 000 chunks: cloudify serve "
          f"{ours / 1024:.1f} MiB, fsspec reference filesystem {peer / 1024:.1f} MiB")


def main():
    cloudify = binary()
    with tempfile.TemporaryDirectory() as tmp:
        index_comparison(cloudify, tmp)
        bucket, folder, refs_path = million_chunk_bucket(tmp)
        reference_sizes(folder, refs_path, tmp)
        parquet_exports(cloudify, tmp)
        peak_memory(cloudify, bucket, refs_path)


if __name__ == "__main__":
    main()
