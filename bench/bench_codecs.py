"""The candidates for the codec `--codec auto` re-encodes with, measured side by side in one run
on the 730x180x360 float32 dataset of bench_reencoded.py (zlib+shuffle source chunks of
30x180x360):

1. Per codec, on one 7.8 MB source chunk, one core: compressed size, and numcodecs' encode and
   decode rates (decode is what every client pays; numcodecs is what zarr-python uses).
2. For the codecs the core encodes (zlib, zstd): xarray's full load of the variable through
   `cloudify serve` `/zarr` with `--codec C --chunks time=10` (re-encoded on every request),
   median of three rounds.

lz4 and blosc are measured for the client's side only: the core has no encoder for them (lz4
has a pure-Rust one that builds for wasm32; C-Blosc does not build for wasm32-unknown-unknown).

Run: cargo build --release -p cloudify && .venv/bin/python bench/bench_codecs.py
"""
import os
import statistics
import subprocess
import sys
import tempfile

import netCDF4
import numcodecs
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_kerchunk import BIN, ROOT, big_file  # noqa: E402
from bench_reencoded import load, serve  # noqa: E402
from peer_numcodecs import rate  # noqa: E402

CANDIDATES = {
    "zlib:1": numcodecs.Zlib(1),
    "zlib:3": numcodecs.Zlib(3),
    "zlib:6": numcodecs.Zlib(6),
    "zstd:-5": numcodecs.Zstd(-5),
    "zstd:-3": numcodecs.Zstd(-3),
    "zstd:-1": numcodecs.Zstd(-1),
    "zstd:1": numcodecs.Zstd(1),
    "zstd:3": numcodecs.Zstd(3),
    "lz4": numcodecs.LZ4(1),
    "blosc lz4 shuffle": numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
    "blosc zstd:1 shuffle": numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE),
}
# What the core encodes, as `--codec` names it.
SERVED = ["zlib:1", "zlib:3", "zlib:6", "zstd:-5", "zstd:-3", "zstd:-1", "zstd:1", "zstd:3"]


def per_chunk(chunk):
    raw = chunk.tobytes()
    rows = {}
    for name, codec in CANDIDATES.items():
        encoded = codec.encode(raw)
        assert bytes(codec.decode(encoded)) == raw
        rows[name] = (len(raw) / len(encoded), rate(lambda: codec.encode(raw), len(raw), 5),
                      rate(lambda: codec.decode(encoded), len(raw), 5))
    return rows


def through_the_function(path, expected):
    out = {}
    with tempfile.TemporaryDirectory() as bucket:
        for codec in SERVED:
            subprocess.run([BIN, "index", "--bucket", bucket, "--dataset", codec.replace(":", ""),
                            "--codec", codec, "--chunks", "time=10", path],
                           check=True, capture_output=True)
        proc, url = serve(bucket)
        try:
            times = {c: [] for c in SERVED}
            for _ in range(3):
                for codec in SERVED:
                    seconds, values = load(f"{url}/datasets/{codec.replace(':', '')}/zarr",
                                           zarr_format=2, consolidated=True)
                    assert np.array_equal(values, expected)
                    times[codec].append(seconds)
            out = {c: statistics.median(t) for c, t in times.items()}
        finally:
            proc.terminate()
            proc.wait()
    return out


def main():
    path = big_file(os.path.join(ROOT, "bench", "out", "tas_730x180x360.nc"))
    with netCDF4.Dataset(path) as nc:
        expected = nc["tas"][:].filled(np.nan)
    rows = per_chunk(np.ascontiguousarray(expected[:30]).astype("<f4"))
    loads = through_the_function(path, expected)
    print("| codec | ratio | numcodecs encode (MiB/s) | numcodecs decode (MiB/s) | "
          "xarray load via /zarr, time=10 (s, median of 3) |")
    print("|---|---|---|---|---|")
    for name, (ratio, enc, dec) in rows.items():
        load_s = f"{loads[name]:.2f}" if name in loads else "— (no encoder in the core)"
        print(f"| {name} | {ratio:.2f} | {enc:.0f} | {dec:.0f} | {load_s} |")


if __name__ == "__main__":
    main()
