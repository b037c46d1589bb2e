"""The peer of `cargo bench -p cloudify-core --bench reencode`: the same work with numcodecs
(C zlib, C zstd, Cython shuffle) on the same kind of 30x180x360 float32 chunk, one core.
Run: .venv/bin/python bench/peer_numcodecs.py
"""
import time

import numcodecs
import numpy as np


def field():
    rng = np.random.default_rng(1)
    lat = np.deg2rad(np.arange(180) - 89.5)[None, :, None]
    t = np.arange(30)[:, None, None]
    x = np.arange(360)[None, None, :]
    v = 280 + 20 * np.cos(lat) + (t + x) * 0.001 + rng.integers(0, 400, (30, 180, 360)) / 100 - 2
    return np.round(v.astype("f4") * 100) / 100


def rate(fn, nbytes, repeat=10):
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return nbytes * repeat / (time.perf_counter() - t0) / 2**20


def main():
    raw = field().astype("<f4").tobytes()
    stored = numcodecs.Zlib(4).encode(numcodecs.Shuffle(4).encode(raw))
    shuffle = numcodecs.Shuffle(4)
    zlib4 = numcodecs.Zlib(4)
    print(f"decode source shuffle+zlib: {rate(lambda: shuffle.decode(zlib4.decode(stored)), len(raw)):.0f} MiB/s")
    for name, codec in [("zlib:1", numcodecs.Zlib(1)), ("zlib:5", numcodecs.Zlib(5)),
                        ("zstd:1", numcodecs.Zstd(1)), ("zstd:3", numcodecs.Zstd(3))]:
        print(f"encode {name}: {rate(lambda: codec.encode(raw), len(raw)):.0f} MiB/s")


if __name__ == "__main__":
    main()
