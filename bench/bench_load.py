"""Load on `cloudify serve` with its default memory (`--memory` 256 MiB): many concurrent
clients sending mixed requests, on loopback, bounded in count and time.

1. 500 concurrent clients send 2000 requests drawn from chunks of the three routes (the
   source's chunks passed through, and a `--chunks time=10` grid re-encoded from them),
   metadata documents and plots of a 730x180x360 float32 zlib+shuffle dataset. Every answer
   must be 200 with the bytes one client alone was answered; reported: the server's peak
   resident memory (VmHWM) and what its budget of bytes in flight counted (`GET /`).
2. Requests per second of one client and of 50 clients on the same 400 chunk requests.

Run: cargo build --release -p cloudify && .venv/bin/python bench/bench_load.py
(`BENCH_SERVE_ARGS="--memory N"` runs every server with other flags.)
"""
import asyncio
import hashlib
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import aiohttp

sys.path.insert(0, os.path.dirname(__file__))
from bench_kerchunk import BIN, ROOT, big_file  # noqa: E402

# The whole run gives up after this long, and a single answer after REQUEST_TIMEOUT.
DEADLINE = 600
REQUEST_TIMEOUT = 300


def serve(bucket, *extra):
    extra = (*extra, *os.environ.get("BENCH_SERVE_ARGS", "").split())
    proc = subprocess.Popen([BIN, "serve", "--bucket", bucket, "--addr", "127.0.0.1:0",
                             "--log-format", "json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return proc, re.search(r"http://[0-9.:]+", proc.stdout.readline()).group(0)


def vm_hwm(pid):
    with open(f"/proc/{pid}/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    return int(kb) * 1024


def mixed_paths():
    """Chunk keys of every route and grid, metadata documents and plots."""
    chunks = [f"/datasets/big/kerchunk/tas/{t}.0.0" for t in range(25)]
    chunks += [f"/datasets/big/zarr/tas/{t}.0.0" for t in range(25)]
    chunks += [f"/datasets/big/zarr3/tas/c/{t}/0/0" for t in range(25)]
    chunks += [f"/datasets/big10/zarr/tas/{t}.0.0" for t in range(73)]
    docs = ["/datasets/big/zarr/.zmetadata", "/datasets/big/zarr3/zarr.json",
            "/datasets/big10/zarr3/tas/zarr.json", "/datasets/big/info"]
    plots = [f"/datasets/big/plot/tas/map/viridis/time/{t}_{t + 1}" for t in (0, 100, 400)]
    return chunks, docs, plots


async def fetch(session, url, path):
    async with session.get(url + path) as r:
        return r.status, hashlib.sha256(await r.read()).hexdigest()


async def run_clients(url, paths, clients):
    """`paths` fetched by `clients` concurrent clients (each its own connection); returns the
    answers in order and the seconds it took."""
    queue = asyncio.Queue()
    for i, p in enumerate(paths):
        queue.put_nowait((i, p))
    answers = [None] * len(paths)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)

    async def client():
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while not queue.empty():
                i, p = queue.get_nowait()
                answers[i] = await fetch(session, url, p)

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), DEADLINE)
    return answers, time.perf_counter() - t0


def main():
    path = big_file(os.path.join(ROOT, "bench", "out", "tas_730x180x360.nc"))
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as bucket:
        for ds, opts in [("big", []), ("big10", ["--chunks", "time=10"])]:
            subprocess.run([BIN, "index", "--bucket", bucket, "--dataset", ds, *opts, path],
                           check=True, capture_output=True)
        chunks, docs, plots = mixed_paths()
        # What one client alone is answered: the right bytes for every path.
        proc, url = serve(bucket)
        try:
            unique = chunks + docs + plots
            alone, _ = asyncio.run(run_clients(url, unique, 1))
            bad = [(p, s) for p, (s, _) in zip(unique, alone) if s != 200]
            assert not bad, bad
            right = dict(zip(unique, alone))
        finally:
            proc.terminate()
            proc.wait()
        # A fresh server: its peak memory is the load's.
        proc, url = serve(bucket)
        try:
            paths = rng.choices(chunks, k=1700) + rng.choices(docs, k=200) + \
                rng.choices(plots, k=100)
            rng.shuffle(paths)
            answers, seconds = asyncio.run(run_clients(url, paths, 500))
            wrong = [(p, a) for p, a in zip(paths, answers) if a != right[p]]
            root = aiohttp_get_json(url + "/")
            counts, config = root["in_flight"], root["config"]
            hwm = vm_hwm(proc.pid)
        finally:
            proc.terminate()
            proc.wait()
        print(f"500 clients, {len(paths)} mixed requests: {len(paths) - len(wrong)} answered "
              f"200 with the right bytes, {len(wrong)} not {wrong[:3]}; {seconds:.1f} s")
        print(f"  peak RSS (VmHWM) {hwm / 2**20:.0f} MiB with --memory "
              f"{config['memory_bytes'] / 2**20:.0f} MiB; bytes in flight: budget "
              f"{config['in_flight_budget_bytes'] / 2**20:.0f} MiB, peak "
              f"{counts['peak'] / 2**20:.1f} MiB, {counts['waited']} requests waited, "
              f"{counts['timed_out']} timed out")
        # Throughput: one client, then 50, on the same chunk requests of a fresh server each.
        rounds = rng.choices(chunks, k=400)
        rates = {}
        for clients in (1, 50):
            proc, url = serve(bucket)
            try:
                asyncio.run(run_clients(url, docs, 1))  # manifests read once
                answers, seconds = asyncio.run(run_clients(url, rounds, clients))
                assert all(a == right[p] for p, a in zip(rounds, answers))
                rates[clients] = len(rounds) / seconds
                print(f"  {clients} client(s): peak RSS (VmHWM) {vm_hwm(proc.pid) / 2**20:.0f} MiB")
            finally:
                proc.terminate()
                proc.wait()
        print(f"400 chunk requests: 1 client {rates[1]:.1f} req/s, 50 clients "
              f"{rates[50]:.1f} req/s: {rates[50] / rates[1]:.2f}x")


def aiohttp_get_json(url):
    async def get():
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return await r.json()
    return asyncio.run(get())


if __name__ == "__main__":
    main()
