"""Two builds of `cloudify serve` side by side: xarray full loads of the 730x180x360 float32
zlib+shuffle dataset on the default grid (source chunks passed through) and on a
`--chunks time=10` grid (re-encoded), `/zarr` and `/zarr3`, the two servers' rounds
interleaved on one bucket. Reported per build: the median wall time of a load and the server's
CPU seconds for it (from /proc), and the time=10 grid's time over the default grid's.

Run: .venv/bin/python bench/bench_ab.py BEFORE_BINARY AFTER_BINARY 2>/dev/null
(e.g. a `git worktree` of the commit before, built with its own CARGO_TARGET_DIR).
"""
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import xarray as xr

sys.path.insert(0, os.path.dirname(__file__))
from bench_kerchunk import BIN, ROOT, big_file  # noqa: E402
from bench_reencoded import load, serve  # noqa: E402
from load_connections import proc_figures  # noqa: E402

ROUNDS = 7
LOADS = [("big", "zarr", 2), ("big", "zarr3", 3), ("big10", "zarr", 2), ("big10", "zarr3", 3)]


def cpu_seconds(pid):
    return proc_figures(pid)[1]


def main(builds):
    path = big_file(os.path.join(ROOT, "bench", "out", "tas_730x180x360.nc"))
    with xr.open_dataset(path, engine="netcdf4") as ds:
        expected = ds.tas.load().values
    results = {}
    with tempfile.TemporaryDirectory() as bucket:
        for ds, opts in [("big", []), ("big10", ["--chunks", "time=10"])]:
            subprocess.run([BIN, "index", "--bucket", bucket, "--dataset", ds, *opts, path],
                           check=True, capture_output=True)
        for _ in range(ROUNDS):
            for build, binary in builds.items():
                proc, url = serve(bucket, binary=binary)
                try:
                    for ds, view, fmt in LOADS:
                        before = cpu_seconds(proc.pid)
                        seconds, values = load(f"{url}/datasets/{ds}/{view}",
                                               consolidated=True, zarr_format=fmt)
                        assert np.array_equal(values, expected)
                        results.setdefault((build, ds, view), []).append(
                            (seconds, cpu_seconds(proc.pid) - before))
                finally:
                    proc.terminate()
                    proc.wait()

    def median(key, i):
        return statistics.median(r[i] for r in results[key])

    for build in builds:
        for ds, view, _ in LOADS:
            key = (build, ds, view)
            print(f"{build}: {ds} /{view}: {median(key, 0):.2f} s, server CPU "
                  f"{median(key, 1):.2f} s")
        for view in ("zarr", "zarr3"):
            ratio = median((build, "big10", view), 0) / median((build, "big", view), 0)
            print(f"{build}: /{view} time=10 over the default grid: {ratio:.2f}")


if __name__ == "__main__":
    main({"before": sys.argv[1], "after": sys.argv[2]})
