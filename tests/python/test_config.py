"""One configuration: `cloudify serve` takes its settings from the core's `Config` (flags and
`CLOUDIFY_*` variables over the native preset); the indexer refuses chunks the named platforms
would refuse; every request is logged once, and what a client is told never names a bucket
key, a file path or a source URL."""
import json
import os
import shutil
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor

import netCDF4
import numpy as np
import pytest

from servers import Server

MIB = 1 << 20


def test_serve_reports_the_native_preset_and_its_overrides(cloudify, datasets, start_server):
    plain = start_server(datasets[0]).get("/").json()["config"]
    assert plain["platform"] == "native"
    assert plain["read_budget_bytes"] == 64 * MIB
    assert plain["index_ttl_seconds"] == 60
    assert plain["max_reads"] is None and plain["max_response_bytes"] is None
    env = dict(os.environ, CLOUDIFY_INDEX_TTL_SECONDS="7", CLOUDIFY_MANIFEST_CACHE_BYTES="1000")
    s = Server(cloudify, datasets[0], "--read-budget", "1000", env=env)
    try:
        c = s.get("/").json()["config"]
        assert (c["read_budget_bytes"], c["index_ttl_seconds"]) == (1000, 7)
        assert c["manifest_cache_bytes"] == 1000
        assert s.get("/datasets/mixed/zarr/zlib_shuffle/0.0.0").status_code == 413
    finally:
        s.stop()


def test_a_bad_setting_is_an_error_naming_it(cloudify, datasets):
    env = dict(os.environ, CLOUDIFY_READ_BUDGET_BYTES="lots")
    r = subprocess.run([cloudify, "serve", "--bucket", datasets[0], "--addr", "127.0.0.1:0"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode != 0 and "READ_BUDGET_BYTES" in r.stderr, r.stderr


@pytest.fixture
def big_chunks(tmp_path):
    """A variable in source chunks of 40 000 bytes: served in chunks of 16 of them (640 000
    bytes) it is over a Worker free plan's 512 KiB."""
    path = str(tmp_path / "big.nc")
    with netCDF4.Dataset(path, "w") as nc:
        for name, n in [("t", 16), ("y", 100), ("x", 100)]:
            nc.createDimension(name, n)
        v = nc.createVariable("field", "f4", ("t", "y", "x"), chunksizes=(1, 100, 100),
                              zlib=True)
        v[:] = np.ones((16, 100, 100), "f4")
        nc.createVariable("t", "f8", ("t",))[:] = np.arange(16.0)
    return path


def index(cloudify, bucket, *args):
    return subprocess.run([cloudify, "index", "--bucket", bucket, *args],
                          capture_output=True, text=True)


def test_a_chunk_over_a_targets_budget_is_refused_at_index_time(cloudify, big_chunks, tmp_path):
    bucket = str(tmp_path / "bucket")
    r = index(cloudify, bucket, "--dataset", "big", "--target", "native,worker-free",
              "--chunks", "t=16", big_chunks)
    assert r.returncode != 0
    for part in ['"field"', "640000 bytes", "worker-free", "524288"]:
        assert part in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(bucket, "index.json"))
    # The file's own chunks fit; the paid plan's and Lambda's budgets are larger.
    assert index(cloudify, bucket, "--dataset", "big", "--target", "worker-free",
                 big_chunks).returncode == 0
    assert index(cloudify, bucket, "--dataset", "paid", "--target", "worker-paid,lambda",
                 "--chunks", "t=16", big_chunks).returncode == 0
    r = index(cloudify, bucket, "--dataset", "x", "--target", "mainframe", big_chunks)
    assert r.returncode != 0 and "mainframe" in r.stderr and "worker-free" in r.stderr


def test_the_config_file_names_the_targets(cloudify, big_chunks, tmp_path):
    (tmp_path / "cloudify.toml").write_text(
        'targets = ["worker-free"]\n[datasets.big]\nsources = ["big.nc"]\nchunks = "t=16"\n')
    bucket = str(tmp_path / "bucket")
    r = index(cloudify, bucket, "--config", str(tmp_path / "cloudify.toml"))
    assert r.returncode != 0 and "524288" in r.stdout + r.stderr, r.stdout + r.stderr
    # --target overrides the file.
    r = index(cloudify, bucket, "--config", str(tmp_path / "cloudify.toml"), "--target", "native")
    assert r.returncode == 0, r.stderr


def test_memory_bounds_the_requests_in_flight(cloudify, big_chunks, tmp_path):
    """`--memory` is the server's: the caches and a 96 MiB reserve are taken from it, the rest
    is room for requests in flight. Concurrent requests wait for it in turn and all get the
    file's values; a request needing more room than there is is a 413 naming the setting."""
    bucket = str(tmp_path / "bucket")
    assert index(cloudify, bucket, "--dataset", "big", "--codec", "zlib:1",
                 big_chunks).returncode == 0
    assert index(cloudify, bucket, "--dataset", "coarse", "--codec", "zlib:1",
                 "--chunks", "t=4", big_chunks).returncode == 0
    # A served chunk of 40 000 bytes holds about 80 000 (decoded, then beside its encoding).
    room = 100_000
    env = dict(os.environ, CLOUDIFY_MANIFEST_CACHE_BYTES=str(MIB),
               CLOUDIFY_DECODED_CACHE_BYTES="0")
    s = Server(cloudify, bucket, "--memory", str(96 * MIB + MIB + room), env=env)
    try:
        c = s.get("/").json()["config"]
        assert (c["in_flight_budget_bytes"], c["queue_timeout_seconds"]) == (room, 30)
        paths = [f"/datasets/big/zarr/field/{i % 16}.0.0" for i in range(64)]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(s.get, paths))
        with netCDF4.Dataset(big_chunks) as nc:
            expected = nc["field"][:].filled(np.nan)
        for path, r in zip(paths, answers):
            assert r.status_code == 200, (path, r.text[:200])
            t = int(path.rsplit("/", 1)[1].split(".")[0])
            values = np.frombuffer(zlib.decompress(r.content), "<f4").reshape(100, 100)
            np.testing.assert_array_equal(values, expected[t])
        counts = s.get("/").json()["in_flight"]
        assert counts["granted"] >= 64 and counts["held"] == 0, counts
        assert 80_000 <= counts["peak"] <= room, counts
        assert counts["timed_out"] == 0, counts
        r = s.get("/datasets/coarse/zarr/field/0.0.0")
        assert r.status_code == 413 and "MEMORY_BYTES" in r.json()["detail"], r.text
    finally:
        s.stop()
    plain = Server(cloudify, bucket)
    try:
        c = plain.get("/").json()["config"]
        assert (c["memory_bytes"], c["in_flight_budget_bytes"]) == (256 * MIB, 64 * MIB)
    finally:
        plain.stop()


def environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)


def test_the_server_runs_with_one_malloc_arena_unless_told_otherwise(cloudify, tmp_path):
    """glibc's arenas hold freed chunk buffers per thread: `cloudify serve` restarts itself
    (the same process) with one arena, and leaves an operator's malloc settings alone."""
    bucket = str(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "MALLOC_ARENA_MAX")}
    for given, expected in [(None, b"glibc.malloc.arena_max=1"),
                            ("glibc.malloc.arena_max=4", b"glibc.malloc.arena_max=4")]:
        s = Server(cloudify, bucket, env=env if given is None else dict(env, GLIBC_TUNABLES=given))
        try:
            assert s.get("/").status_code == 200
            assert environ(s.proc.pid).get(b"GLIBC_TUNABLES") == expected
        finally:
            s.stop()


def log_lines(server):
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


def test_every_request_is_logged_once_and_failures_with_what_the_client_was_not_told(
        cloudify, generated, tmp_path):
    bucket = str(tmp_path / "bucket")
    src = tmp_path / "private" / "copy.nc"
    src.parent.mkdir()
    shutil.copy(generated["mixed"], src)
    assert index(cloudify, bucket, "--dataset", "m", str(src)).returncode == 0
    server = Server(cloudify, bucket, "--log-format", "json")
    try:
        ok = server.get("/datasets/m/zarr/zlib_shuffle/0.0.0")
        assert ok.status_code == 200
        os.remove(src)
        gone = server.get("/datasets/m/zarr/zlib_shuffle/1.0.0")
        assert gone.status_code == 502
        # The client is told what failed, never where.
        assert "zlib_shuffle" in gone.json()["detail"] and "missing" in gone.json()["detail"]
        assert str(tmp_path) not in gone.text and "copy.nc" not in gone.text
        assert server.get("/nosuch").status_code == 404
        lines = log_lines(server)
        assert [(x["method"], x["path"], x["status"]) for x in lines] == [
            ("GET", "/datasets/m/zarr/zlib_shuffle/0.0.0", 200),
            ("GET", "/datasets/m/zarr/zlib_shuffle/1.0.0", 502),
            ("GET", "/nosuch", 404),
        ]
        first, failed, _ = lines
        assert first["level"] == "INFO" and first["bytes_out"] == len(ok.content)
        assert first["store_ops"] == 4 and first["bytes_read"] > 0
        assert first["version"] == server.get("/datasets/m/info").json()["version"]
        assert first["duration_ms"] >= 0
        # The operator's line has what the client did not get: the file at fault.
        assert failed["level"] == "WARN" and str(src) in failed["detail"]
    finally:
        server.stop()
    operator = Server(cloudify, bucket, "--error-detail", "internal")
    try:
        r = operator.get("/datasets/m/zarr/zlib_shuffle/1.0.0")
        assert r.status_code == 502 and str(src) in r.json()["detail"]
        assert "/datasets/m/zarr/zlib_shuffle/1.0.0" in operator.log()
    finally:
        operator.stop()


TOKEN = "Bearer secret-token-that-must-not-appear"


def test_no_secret_in_any_answer_or_log_line(cloudify, generated, tmp_path):
    """A run with an HTTP source behind a token: every answer (headers and bodies) and every
    line the indexer and both servers write is searched for the token."""
    from range_server import RangeServer

    root = tmp_path / "private"
    root.mkdir()
    shutil.copyfile(generated["mixed"], root / "m.nc")
    private = RangeServer(str(root), require={"Authorization": TOKEN})
    env = dict(os.environ, CLOUDIFY_HTTP_HEADERS=json.dumps(
        {f"{private.url}/": {"Authorization": TOKEN}}))
    bucket = str(tmp_path / "bucket")
    seen = []
    servers = []
    try:
        r = subprocess.run([cloudify, "index", "--bucket", bucket, "--dataset", "m",
                            f"{private.url}/m.nc"], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        seen += [r.stdout, r.stderr]
        with_token = Server(cloudify, bucket, "--log-format", "json", env=env)
        without = Server(cloudify, bucket, "--error-detail", "internal")
        servers += [with_token, without]
        paths = ["/", "/datasets/m/info", "/datasets/m/stac", "/intake.yaml",
                 "/datasets/m/zarr/.zmetadata", "/datasets/m/zarr/zlib_shuffle/0.0.0",
                 "/datasets/m/kerchunk/zlib_shuffle/0.0.0", "/datasets/m/zarr3/zarr.json",
                 "/datasets/m/reduce/zlib_shuffle/time/mean", "/openapi.json"]
        statuses = set()
        for s in servers:
            for p in paths:
                resp = s.get(p)
                statuses.add((s is without, resp.status_code))
                seen += [resp.text, json.dumps(dict(resp.headers))]
        # Both servers answered; the one without the token was refused by the source.
        assert (False, 200) in statuses and (True, 502) in statuses
        r = subprocess.run([cloudify, "check", "--bucket", bucket], capture_output=True,
                           text=True, env=env)
        seen += [r.stdout, r.stderr]
    finally:
        for s in servers:
            s.stop()
        private.stop()
    seen += [s.log() for s in servers]
    assert all(s.log() for s in servers), "every server logged its requests"
    leaks = [text for text in seen if "secret-token" in text]
    assert not leaks, leaks[0][:500]
