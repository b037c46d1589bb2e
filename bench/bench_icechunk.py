"""Writing virtual Icechunk repositories: `cloudify index` against VirtualiZarr's HDF parser and
`to_icechunk` (bench/peer_virtualizarr.py) for the same files, in one run.

1. The 65 yearly EC-Earth3 `ta` Amon files of esmvaltool-sample-data concatenated along time
   (median of three rounds).
2. One NetCDF4 file of 250 000 chunks and one of 1 000 000: `tas` (steps, 4, 4) float32
   chunked (1, 4, 4) with zlib and shuffle (one round each): how the peak grows with chunks.

Each is a fresh process under /usr/bin/time: wall time and peak resident memory. cloudify's
includes its whole job (the manifest, kerchunk references, catalog and the repository);
VirtualiZarr's includes importing xarray, zarr and icechunk (about 140 MB). cloudify's
repository of the EC-Earth3 files is then read by icechunk and xarray and compared with the
files (tests/icechunk/read_repos.py).

Run: cargo build --release -p cloudify && scripts/test py (which makes .venv and .venv-ic)
     && .venv/bin/python bench/bench_icechunk.py
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
os.environ.setdefault("CLOUDIFY_BIN", os.path.join(ROOT, "target", "release", "cloudify"))

from servers import binary, sample_files  # noqa: E402

PY_IC = os.path.join(ROOT, ".venv-ic", "bin", "python")
PEER = os.path.join(ROOT, "bench", "peer_virtualizarr.py")
STEPS = (250_000, 1_000_000)


def timed(cmd):
    """Wall seconds and peak resident MiB of `cmd`, a fresh process."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True,
                         env=dict(os.environ, ICECHUNK_LOG="error"))
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed:\n{out.stderr[-3000:]}")
    wall, kib = out.stderr.strip().splitlines()[-1].split()
    return float(wall), int(kib) / 1024


def many_chunk_file(path, steps):
    """`tas` of `steps` (4, 4) chunks, zlib and shuffle, written in slabs so netCDF4's memory
    stays small."""
    code = f"""
import netCDF4, numpy as np
with netCDF4.Dataset({path!r}, "w") as nc:
    nc.createDimension("time", {steps}); nc.createDimension("lat", 4); nc.createDimension("lon", 4)
    t = nc.createVariable("time", "f8", ("time",)); t.units = "hours since 2000-01-01"
    t[:] = np.arange({steps}, dtype="f8")
    v = nc.createVariable("tas", "f4", ("time", "lat", "lon"), zlib=True, shuffle=True,
                          chunksizes=(1, 4, 4))
    v.set_var_chunk_cache(size=1 << 20)
    rng = np.random.default_rng(0)
    for at in range(0, {steps}, 50_000):
        v[at:at + 50_000] = rng.standard_normal((50_000, 4, 4)).astype("f4")
"""
    subprocess.run([PY_IC, "-c", code], check=True)


def compare(cloudify, name, files, rounds, tmp, *concat):
    ours, peer = [], []
    for r in range(rounds):
        bucket = os.path.join(tmp, f"{name}-bucket-{r}")
        ours.append(timed([cloudify, "index", "--bucket", bucket, "--dataset", name, *concat,
                           *files]))
        peer.append(timed([PY_IC, PEER, os.path.join(tmp, f"{name}-vz-{r}"), *concat, *files]))
    t = lambda runs: statistics.median(w for w, _ in runs)  # noqa: E731
    m = lambda runs: max(k for _, k in runs)  # noqa: E731
    print(f"{name} ({len(files)} files, {rounds} round(s)): cloudify index {t(ours):.2f} s, "
          f"peak {m(ours):.0f} MiB; VirtualiZarr to_icechunk {t(peer):.2f} s, "
          f"peak {m(peer):.0f} MiB", flush=True)
    return os.path.join(tmp, f"{name}-bucket-0", "icechunk", name)


def main():
    cloudify = binary()
    files = sorted(p for p in sample_files() if "/EC-Earth3/" in p and "/Amon/ta/" in p)
    with tempfile.TemporaryDirectory() as tmp:
        repo = compare(cloudify, "ta", files, 3, tmp, "--concat-dim", "time")
        check = subprocess.run([PY_IC, os.path.join(ROOT, "tests", "icechunk", "read_repos.py")],
                               input=json.dumps([{"repo": repo, "sources": files,
                                                  "left_out": []}]),
                               capture_output=True, text=True)
        print(f"cloudify's EC-Earth3 repository read by icechunk: {check.stdout.strip()[:300]}")
        for steps in STEPS:
            name = f"chunks{steps}"
            path = os.path.join(tmp, f"{name}.nc")
            many_chunk_file(path, steps)
            compare(cloudify, name, [path], 1, tmp)


if __name__ == "__main__":
    main()
