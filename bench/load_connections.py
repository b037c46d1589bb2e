"""Slow and idle connections against `cloudify serve`, on 127.0.0.1 only, bounded in time and
in connections.

For each binary (`--bin LABEL=PATH`, repeatable) and each open-file limit (`--nofile N`,
repeatable; 0 keeps the limits this script runs with), the script starts `cloudify serve` with
its default timeouts over a small bucket it indexes (`mixed.nc` of the end-to-end tests), then
for `--seconds` (30):

- a second process holds `--idle` (1 000) connections that send nothing and `--dripping`
  (1 000) that send a request line and the start of a header, then one more byte every 0.5 s.
  A connection the server ends is opened again 1 s later, as such a client would;
- a normal client makes a request every 100 ms (`.zmetadata` of the dataset, a new connection
  each, 5 s timeout) and times it.

It prints, per run: connections open on the client side (mean and least of 1 s samples after
the first two seconds), connections opened and ended by the server, normal requests made,
answered 200 and within 1 s, their latency (median, p99, max), the server's log (bytes and
lines), its peak memory (VmHWM) and CPU seconds; then the same as a Markdown table.

Run (the `before` binary built from the commit before the fix, in a worktree beside this one):

    cargo build --release -p cloudify
    .venv/bin/python bench/load_connections.py --bin before=../before/target/release/cloudify \\
        --bin after=target/release/cloudify --nofile 0 --nofile 1024
"""
import argparse
import asyncio
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time

import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))

import make_files  # noqa: E402
from servers import Server, index  # noqa: E402

PATH = "/datasets/mixed/zarr/.zmetadata"
DRIP_S = 0.5
REOPEN_S = 1.0
EVERY_S = 0.1
TIMEOUT_S = 5.0


# ---- the slow clients, in a process of their own (so they do not slow the normal client) ----

async def slow_client(host, port, drips, stop, stats):
    """One connection at a time, idle or dripping, opened again `REOPEN_S` after the server
    ends it, until `stop`."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                    TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            stats["connect_failed"] += 1
            await asyncio.sleep(REOPEN_S)
            continue
        stats["opened"] += 1
        stats["open"] += 1
        try:
            if drips:
                writer.write(b"GET /datasets HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            while not stop.is_set():
                try:
                    # Anything read (an answer) or the end means the server dealt with it.
                    await asyncio.wait_for(reader.read(100), DRIP_S if drips else 1.0)
                    stats["ended_by_server"] += 1
                    break
                except asyncio.TimeoutError:
                    if drips:
                        writer.write(b"a")
                        await writer.drain()
        except OSError:
            stats["ended_by_server"] += 1
        finally:
            stats["open"] -= 1
            writer.close()
        await asyncio.sleep(REOPEN_S)


async def attack(host, port, idle, dripping, stop_event, seconds, out):
    stats = dict(opened=0, open=0, ended_by_server=0, connect_failed=0)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(slow_client(host, port, i >= idle, stop, stats))
             for i in range(idle + dripping)]
    samples = []
    t0 = time.monotonic()
    while not stop_event.is_set() and time.monotonic() - t0 < seconds + 10:
        await asyncio.sleep(1)
        if time.monotonic() - t0 >= 2:
            samples.append(stats["open"])
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    stats["open_mean"] = round(statistics.mean(samples)) if samples else 0
    stats["open_least"] = min(samples) if samples else 0
    del stats["open"]
    out.put(stats)


def attacker(host, port, idle, dripping, stop_event, seconds, out):
    asyncio.run(attack(host, port, idle, dripping, stop_event, seconds, out))


# ---- one run ----

def limit_files(n):
    def apply():
        if n:
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return apply


def proc_figures(pid):
    with open(f"/proc/{pid}/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return hwm, cpu


def log_figures(path):
    size, lines = 0, 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            size += len(block)
            lines += block.count(b"\n")
    return size, lines


def run(label, cloudify, bucket, nofile, args):
    server = Server(cloudify, bucket, preexec_fn=limit_files(nofile))
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    try:
        assert requests.get(server.url + PATH, timeout=TIMEOUT_S).status_code == 200
        stop, out = multiprocessing.Event(), multiprocessing.Queue()
        slow = multiprocessing.Process(
            target=attacker, args=(host, int(port), args.idle, args.dripping, stop,
                                   args.seconds, out))
        slow.start()
        answers = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            start = time.monotonic()
            try:
                status = requests.get(server.url + PATH, timeout=TIMEOUT_S).status_code
            except requests.RequestException as e:
                status = type(e).__name__
            answers.append((status, time.monotonic() - start))
            time.sleep(max(0.0, EVERY_S - (time.monotonic() - start)))
        stop.set()
        stats = out.get(timeout=60)
        slow.join(timeout=30)
        hwm, cpu = proc_figures(server.proc.pid)
    finally:
        server.stop()
    log_bytes, log_lines = log_figures(server.log_path)
    os.remove(server.log_path)
    times = sorted(t for _, t in answers)
    ok = [t for status, t in answers if status == 200]
    failures = sorted({str(s) for s, _ in answers if s != 200})
    return dict(
        label=label, nofile=nofile or resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        **stats,
        requests=len(answers), answered=len(ok), within_1s=sum(t < 1.0 for t in ok),
        median_ms=statistics.median(times) * 1000,
        p99_ms=times[min(len(times) - 1, int(0.99 * len(times)))] * 1000,
        max_ms=times[-1] * 1000, failures=", ".join(failures) or "-",
        log_bytes=log_bytes, log_lines=log_lines, vmhwm_mib=hwm, cpu_s=cpu,
    )


COLUMNS = [
    ("binary", "label"), ("open files", "nofile"),
    ("slow conns open (mean / least)", lambda r: f"{r['open_mean']} / {r['open_least']}"),
    ("opened / ended by server", lambda r: f"{r['opened']} / {r['ended_by_server']}"),
    ("connects timed out", "connect_failed"),
    ("normal requests", "requests"), ("answered 200", "answered"), ("within 1 s", "within_1s"),
    ("latency median / p99 / max",
     lambda r: f"{r['median_ms']:.1f} / {r['p99_ms']:.1f} / {r['max_ms']:.0f} ms"),
    ("failures", "failures"),
    ("server log", lambda r: f"{r['log_bytes']:,} B, {r['log_lines']:,} lines"),
    ("peak RSS (VmHWM)", lambda r: f"{r['vmhwm_mib']:.1f} MiB"),
    ("server CPU", lambda r: f"{r['cpu_s']:.1f} s"),
]


def table(results):
    cell = [[(c(r) if callable(c) else str(r[c])) for _, c in COLUMNS] for r in results]
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in cell]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", action="append", metavar="LABEL=PATH",
                   help="a binary to measure (repeatable); default: after=$CLOUDIFY_BIN or "
                        "target/release/cloudify")
    p.add_argument("--nofile", action="append", type=int, metavar="N",
                   help="the server's open-file limit, soft and hard (repeatable); 0 keeps "
                        "this script's (the default)")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--dripping", type=int, default=1000)
    args = p.parse_args()
    assert args.idle + args.dripping <= 5000, "bounded: at most 5 000 slow connections"
    default = os.environ.get("CLOUDIFY_BIN", os.path.join(ROOT, "target", "release", "cloudify"))
    binaries = [b.split("=", 1) for b in (args.bin or [f"after={default}"])]
    need = args.idle + args.dripping + 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        source = make_files.write_all(os.path.join(tmp, "sources"))["mixed"]
        buckets = {}
        for label, path in binaries:  # each binary serves the bucket it indexed
            buckets[label] = os.path.join(tmp, label)
            index(path, buckets[label], "mixed", source)
        for nofile in args.nofile or [0]:
            for label, path in binaries:
                r = run(label, path, buckets[label], nofile, args)
                print(r, flush=True)
                results.append(r)
    print()
    print(f"{args.idle} idle + {args.dripping} dripping connections for {args.seconds:.0f} s; "
          f"a normal request every {EVERY_S * 1000:.0f} ms")
    print(table(results))


if __name__ == "__main__":
    main()
