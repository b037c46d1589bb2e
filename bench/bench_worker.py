"""The Worker against `cloudify serve`, on the same bucket, in one run.

1. Per-chunk latency: every chunk of the generated `mixed` dataset and of a 730x180x360
   float32 zlib+shuffle field (30-step chunks, 7.8 MB decoded), one request at a time, through
   `wrangler dev` (workerd, local R2) and `cloudify serve` (local folder): median and 90th
   percentile for `/kerchunk` (pass-through) and `/zarr` (decode and re-encode). The Worker's
   chunk cache is off (CACHE_CHUNKS=false), so every request is computed.
2. Wasm start-up: V8 compiling and instantiating the bundle's .wasm in Node (the engine workerd
   uses), and the first request of a fresh `wrangler dev` against the next ones.

Run: scripts/test worker (or: cargo build --release -p cloudify && npm ci &&
      npx wrangler deploy --dry-run --outdir target/worker-dist), then
      .venv/bin/python bench/bench_worker.py
"""
import glob
import os
import statistics
import subprocess
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
from servers import Server, binary  # noqa: E402

INSTANTIATE = r"""
const fs = require("fs");
const bytes = fs.readFileSync(process.argv[1]);
const t0 = process.hrtime.bigint();
const module = new WebAssembly.Module(bytes);
const t1 = process.hrtime.bigint();
const imports = {};
for (const i of WebAssembly.Module.imports(module)) {
  imports[i.module] ??= {};
  imports[i.module][i.name] = i.kind === "function" ? () => { throw new Error("stub"); }
    : i.kind === "memory" ? new WebAssembly.Memory({ initial: 17 })
    : i.kind === "table" ? new WebAssembly.Table({ initial: 1, element: "anyfunc" })
    : new WebAssembly.Global({ value: "i32", mutable: true }, 0);
}
new WebAssembly.Instance(module, imports);
const t2 = process.hrtime.bigint();
console.log(Number(t1 - t0) / 1e6, Number(t2 - t1) / 1e6);
"""


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
            assert r.status_code == 200, (p, r.status_code, r.text[:200])
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
            wrangler.index(cloudify, bucket, ds_id, files[ds_id])
        state = os.path.join(tmp, "wrangler")
        os.makedirs(state)
        wrangler.load_bucket(bucket, state)
        native = Server(cloudify, bucket, "--read-budget", str(wrangler.READ_BUDGET))
        t0 = time.perf_counter()
        worker = wrangler.Wrangler(state, ["CACHE_CHUNKS:false"])
        started = (time.perf_counter() - t0) * 1000
        try:
            probe = "/datasets/mixed/zarr/zlib_shuffle/0.0.0"
            t0 = time.perf_counter()
            worker.get(probe)
            first = (time.perf_counter() - t0) * 1000
            print(f"wrangler dev: ready in {started:.0f} ms; first chunk {first:.1f} ms")
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
    wasm = glob.glob(os.path.join(ROOT, "functions", "worker", "build", "**", "*.wasm"),
                     recursive=True)
    for w in wasm:
        runs = [subprocess.run(["node", "-e", INSTANTIATE, w], capture_output=True, text=True,
                               check=True).stdout.split() for _ in range(5)]
        compile_ms = statistics.median(float(r[0]) for r in runs)
        inst_ms = statistics.median(float(r[1]) for r in runs)
        print(f"{os.path.relpath(w, ROOT)}: {os.path.getsize(w)} bytes; V8 compile "
              f"{compile_ms:.1f} ms, instantiate {inst_ms:.1f} ms (median of 5, Node {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()})")


if __name__ == "__main__":
    main()
