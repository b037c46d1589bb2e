"""The Worker against `cloudify serve`, on the same bucket, in one run.

1. Per-chunk latency: every chunk of the generated `mixed` dataset and of a 730x180x360
   float32 zlib+shuffle field (30-step chunks, 7.8 MB decoded), one request at a time, through
   `wrangler dev` (workerd, local R2) and `cloudify serve` (local folder): median and 90th
   percentile for `/kerchunk` (pass-through) and `/zarr` (decode and re-encode). The Worker's
   chunk cache is off (CACHE_CHUNKS=false), so every request is computed.
2. Wasm start-up: the first request a fresh `wrangler dev` answers (`/`, no storage read), in
   which workerd instantiates the module, against the median of the next 50. (Node 20's V8
   cannot compile the module alone: it uses wasm exception handling, which workerd enables.)

Run: scripts/test worker (or: cargo build --release -p cloudify && npm ci &&
      npx wrangler deploy --dry-run --outdir target/worker-dist), then
      .venv/bin/python bench/bench_worker.py
"""
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "worker"))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("CLOUDIFY_BIN", os.path.join(ROOT, "target", "release", "cloudify"))

import make_files  # noqa: E402
import wrangler  # noqa: E402
from bench_kerchunk import big_file  # noqa: E402
from servers import Server, binary, index  # noqa: E402

def chunk_paths(server, ds_id, view):
    meta = server.get(f"/datasets/{ds_id}/{view}/.zmetadata").json()["metadata"]
    out = []
    for key, doc in meta.items():
        if key.endswith("/.zarray") and doc["shape"]:
            name = key[: -len("/.zarray")]
            first = ".".join("0" for _ in doc["shape"])
            last = ".".join(str(-(-s // c) - 1) for s, c in zip(doc["shape"], doc["chunks"]))
            out += [f"/datasets/{ds_id}/{view}/{name}/{first}",
                    f"/datasets/{ds_id}/{view}/{name}/{last}"]
    return out


def latencies(server, paths, rounds=3):
    times = []
    for _ in range(rounds):
        for p in paths:
            t0 = time.perf_counter()
            r = server.get(p)
            times.append((time.perf_counter() - t0) * 1000)
            # 404: kerchunk's answer for a chunk never written.
            assert r.status_code in (200, 404), (p, r.status_code, r.text[:200])
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def main():
    cloudify = binary()
    with tempfile.TemporaryDirectory() as tmp:
        bucket = os.path.join(tmp, "bucket")
        sources = os.path.join(bucket, "sources")
        files = make_files.write_all(sources)
        files["big"] = big_file(os.path.join(sources, "big.nc"))
        for ds_id in ("mixed", "big"):
            index(cloudify, bucket, ds_id, files[ds_id])
        state = os.path.join(tmp, "wrangler")
        os.makedirs(state)
        wrangler.load_bucket(bucket, state)
        # Each with its default read budget (the Worker's 16 MiB holds `big`'s chunks).
        native = Server(cloudify, bucket)
        t0 = time.perf_counter()
        worker = wrangler.Wrangler(state, ["CACHE_CHUNKS:false"])
        started = (time.perf_counter() - t0) * 1000
        try:
            warm = []
            for _ in range(50):
                t0 = time.perf_counter()
                worker.get("/")
                warm.append((time.perf_counter() - t0) * 1000)
            print(f"wrangler dev: ready in {started:.0f} ms; first request (instantiates the "
                  f"wasm) {worker.first_ms:.1f} ms, next ones {statistics.median(warm):.1f} ms")
            print(f"{'dataset/view':24} {'worker median':>14} {'p90':>8} {'serve median':>14} {'p90':>8}  chunks")
            for ds_id in ("mixed", "big"):
                for view in ("kerchunk", "zarr"):
                    paths = chunk_paths(native, ds_id, view)
                    w = latencies(worker, paths)
                    n = latencies(native, paths)
                    print(f"{ds_id + '/' + view:24} {w[0]:11.1f} ms {w[1]:5.1f} ms "
                          f"{n[0]:11.1f} ms {n[1]:5.1f} ms  {len(paths)}")
        finally:
            worker.stop()
            native.stop()


if __name__ == "__main__":
    main()
