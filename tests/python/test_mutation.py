"""Robustness of `cloudify index` against damaged and lying files.

Every mutant of the generated files (see mutate.py: flips, truncations, inflated header
numbers, bytes added at either end, rewired addresses) is indexed into a fresh bucket, and the
run has to end in one of two ways: success (and then no chunk reference past the end of the
file), or a clean error (exit status 1, an `error:` line naming the file). A panic, an abort,
a signal, a hang past TIMEOUT or a peak resident set over MEMORY_BOUND fails the test: an
indexer run on a Lambda or in a batch job must not be taken down by one bad file. Indexing
reads metadata only, so it has no reason to need more memory for a file that merely claims to
be huge.

The counts of successes and clean errors per kind are printed, and written as JSON to
$CLOUDIFY_MUTATION_REPORT when set.
"""
import glob
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import mutate

TIMEOUT = 20.0                     # seconds; a run of an undamaged file takes ~20 ms
MEMORY_BOUND = 512 * 2**20         # bytes of peak resident set
# An address-space cap keeps a runaway mutant from taking the machine with it. An undamaged run
# reserves under 64 MiB; an allocation past the cap aborts the run, a failure either way.
ADDRESS_SPACE_CAP = 2 * 2**30
WORKERS = 2
MIN_MUTANTS = 300

# A diverse subset: netCDF-4 with chunked (deflated, shuffled, Fletcher-32), contiguous and
# variable-length data and dense links (mixed), many B-tree nodes (many_chunks), two unlimited
# dimensions (two_unlimited), a small typical model file (curvilinear); NetCDF-3 in classic,
# 64-bit offset and CDF-5 form and as scipy writes it; plus a plain HDF5 file in the oldest
# layout (superblock 0, version 1 headers, symbol tables) holding a compact dataset.
SOURCES = ["mixed", "many_chunks", "two_unlimited", "curvilinear", "nc3_classic",
           "nc3_64bit_offset", "nc3_cdf5", "nc3_scipy_classic"]

REPRODUCERS = os.path.join(os.path.dirname(__file__), "..", "..", "fuzz", "corpus", "index")


@pytest.fixture(scope="module")
def sources(generated, tmp_path_factory):
    """The chosen generated files (written once per session, see conftest.py) and plain_hdf5."""
    chosen = {name: generated[name] for name in SOURCES}
    chosen["plain_hdf5"] = mutate.plain_hdf5(str(tmp_path_factory.mktemp("plain") / "plain.h5"))
    return chosen


# Runs each command for the test and reports its exit status and its own peak RSS. It is a
# separate, small Python process because a child's ru_maxrss includes the resident set of the
# process it was forked from (the high-water mark is carried over by fork and exec): children
# of pytest, with numpy and h5py loaded, would all start at over 100 MiB. One runner per worker,
# one command at a time; a line of JSON in, a line of JSON out.
RUNNER = r"""
import json, os, resource, signal, sys, time
for line in sys.stdin:
    job = json.loads(line)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            resource.setrlimit(resource.RLIMIT_AS, (job["cap"], job["cap"]))
            err = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(err, 2)
            os.execve(job["cmd"][0], job["cmd"], job["env"])
        finally:
            os._exit(127)
    timed_out, pause = False, 0.002
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > job["timeout"]:
            timed_out = True
            os.killpg(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            break
        time.sleep(pause)
        pause = min(2 * pause, 0.05)
    print(json.dumps({"status": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss,
                      "seconds": time.monotonic() - start, "timed_out": timed_out}), flush=True)
"""


class Runner:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", RUNNER],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, cmd, stderr_path):
        # RUST_BACKTRACE names the function at fault in a panic or a failed allocation.
        env = dict(os.environ, RUST_BACKTRACE="1")
        job = {"cmd": cmd, "env": env, "stderr": stderr_path, "timeout": TIMEOUT,
               "cap": ADDRESS_SPACE_CAP}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the runner process died"
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def run_index(runner, cloudify, path, bucket):
    """Index `path` into the new bucket folder `bucket`; gives the runner's report and the
    run's stderr. The status is the exit code, or minus the signal number."""
    err_path = bucket + ".stderr"
    result = runner.run([cloudify, "index", "--bucket", bucket, "--dataset", "m", path],
                        err_path)
    with open(err_path, "rb") as f:
        stderr = f.read().decode("utf-8", "replace")
    os.remove(err_path)
    return result, stderr


def refs_past_end(bucket, path):
    """The chunk references of an index in `bucket` that end past the end of `path`: a file
    cut short, or a header claiming data it does not hold, must not index as if whole.
    (A large dataset's references are in Parquet, and not checked.)"""
    size = os.path.getsize(path)
    bad = []
    for refs_path in glob.glob(os.path.join(bucket, "datasets", "*", "*", "refs.json")):
        with open(refs_path) as f:
            refs = json.load(f)["refs"]
        bad += [f"{key}: bytes {ref[1]}..{ref[1] + ref[2]}" for key, ref in refs.items()
                if isinstance(ref, list) and len(ref) == 3 and ref[1] + ref[2] > size]
    return size, bad


def classify(path, status, stderr, rss, timed_out):
    """'success', 'clean error', or the reason the run is a failure."""
    if timed_out:
        return f"hang (killed after {TIMEOUT:.0f} s)"
    if rss > MEMORY_BOUND:
        return f"peak RSS {rss / 2**20:.0f} MiB over {MEMORY_BOUND / 2**20:.0f} MiB"
    if "panicked" in stderr:
        return "panic"
    if status == 0:
        return "success"
    if status == 1:
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        if errors and os.path.basename(path) in errors[-1]:
            return "clean error"
        return "error that does not name the file"
    if status == 101:
        return "exit 101 (panic)"
    if status < 0:
        return f"signal {signal.Signals(-status).name}"
    return f"exit {status}"


def telling_line(stderr):
    """The line that says what went wrong (a panic's message, a failed allocation, the last
    error), and the first function of cloudify's own in a backtrace."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    said = (next((line for line in errors if "panicked" in line), None)
            or next((line for line in lines if line.startswith("memory allocation of")), None)
            or next((f"{line} {nxt}" for line, nxt in zip(lines, lines[1:])
                     if "panicked at" in line), None)
            or (errors[-1] if errors else None)
            or (lines[-1] if lines else ""))
    frame = next((line.split(": ", 1)[1] for line in lines
                  if ": cloudify" in line and line.split(":")[0].isdigit()), None)
    return said[:300] + (f" [at {frame}]" if frame else "")


def check(runner, cloudify, path, bucket):
    result, stderr = run_index(runner, cloudify, path, bucket)
    rss = result["maxrss_kib"] * 1024
    outcome = classify(path, result["status"], stderr, rss, result["timed_out"])
    said = telling_line(stderr)
    if outcome == "success":
        size, bad = refs_past_end(bucket, path)
        if bad:
            outcome = f"success, but {len(bad)} chunk reference(s) end past the end of the file"
            said = f"file of {size} bytes; {bad[0]}"
    shutil.rmtree(bucket, ignore_errors=True)
    return {"outcome": outcome, "status": result["status"], "rss_mib": round(rss / 2**20, 1),
            "seconds": round(result["seconds"], 3), "stderr": said}


@pytest.fixture
def runners():
    started = []

    def start():
        started.append(Runner())
        return started[-1]

    yield start
    for r in started:
        r.close()


def test_every_mutant_indexes_or_fails_cleanly(cloudify, sources, runners, tmp_path, capsys):
    started = time.monotonic()
    plan = []
    for name, path in sources.items():
        with open(path, "rb") as f:
            original = f.read()
        for m in mutate.mutants(name, path):
            plan.append((m, original))
    assert len(plan) >= MIN_MUTANTS

    # One runner per worker thread: a runner serves one command at a time.
    idle = queue.SimpleQueue()
    for _ in range(WORKERS):
        idle.put(runners())

    def one(item):
        i, (m, original) = item
        # The file name carries the mutant's number, so an error naming "the file" must name
        # this file, not the source it was made from.
        path = str(tmp_path / f"{i:03d}-{m.source}-{m.kind}.nc")
        with open(path, "wb") as f:
            f.write(m.apply(original))
        runner = idle.get()
        try:
            result = check(runner, cloudify, path, str(tmp_path / f"bucket{i:03d}"))
        finally:
            idle.put(runner)
        result.update(source=m.source, kind=m.kind, mutation=m.what, file=path)
        if result["outcome"] in ("success", "clean error"):
            os.remove(path)                        # keep only what reproduces a failure
        return result

    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(one, enumerate(plan)))

    kinds = sorted({r["kind"] for r in results})
    counts = {k: {"success": 0, "clean error": 0, "failure": 0} for k in kinds}
    failures = []
    for r in results:
        ok = r["outcome"] in ("success", "clean error")
        counts[r["kind"]][r["outcome"] if ok else "failure"] += 1
        if not ok:
            failures.append(r)
    elapsed = time.monotonic() - started
    summary = f"{len(results)} mutants in {elapsed:.0f} s: " + "; ".join(
        f"{k} {c['success']} ok / {c['clean error']} clean error / {c['failure']} failed"
        for k, c in counts.items())
    with capsys.disabled():
        print("\nmutation:", summary, file=sys.stderr)
    report = os.environ.get("CLOUDIFY_MUTATION_REPORT")
    if report:
        with open(report, "w") as f:
            json.dump({"mutants": len(results), "seconds": round(elapsed, 1), "counts": counts,
                       "failures": failures, "results": results}, f, indent=1)

    assert not failures, f"{len(failures)} of {len(results)} mutants failed:\n" + "\n".join(
        f"  {r['source']} {r['kind']} [{r['mutation']}]: {r['outcome']}, status {r['status']}, "
        f"peak {r['rss_mib']} MiB, {r['seconds']} s; {r['stderr']!r} ({r['file']})"
        for r in failures)


@pytest.mark.parametrize("name", sorted(os.listdir(REPRODUCERS)))
def test_saved_reproducers(cloudify, runners, name, tmp_path):
    """Mutants that once failed, each named by its cause (see fuzz/corpus/index/README.md)."""
    if name.endswith(".md"):
        pytest.skip("not a mutant")
    path = str(tmp_path / name)
    shutil.copyfile(os.path.join(REPRODUCERS, name), path)
    result = check(runners(), cloudify, path, str(tmp_path / "bucket"))
    assert result["outcome"] in ("success", "clean error"), result
