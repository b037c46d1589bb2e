"""Hostile sources, storage and requests: each case once let the indexer or a function hang,
allocate what a header claimed, send a credential elsewhere, serve wrong bytes or publish what
it should not. Each now ends in a clean error or the right answer."""
import json
import os
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import netCDF4
import numpy as np
import pytest
import requests

from range_server import RangeServer
from servers import Server, index


def run_index(cloudify, bucket, *args, env=None, timeout=60):
    return subprocess.run([cloudify, "index", "--bucket", bucket, "--dataset", "d", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def small_file(path, value=1.0):
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("t", 4)
        nc.createDimension("x", 8)
        v = nc.createVariable("v", "f4", ("t", "x"), chunksizes=(2, 8), zlib=False)
        v[:] = np.full((4, 8), value, dtype="f4") + np.arange(8)
    return path


class Silent:
    """A server that accepts connections and never answers."""

    def __init__(self, port=0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


def test_a_source_that_never_answers_times_out(cloudify, tmp_path):
    silent = Silent()
    env = dict(os.environ, CLOUDIFY_SOURCE_TIMEOUT_SECONDS="1",
               CLOUDIFY_CONNECT_TIMEOUT_SECONDS="1")
    try:
        r = run_index(cloudify, str(tmp_path / "b"), f"{silent.url}/x.nc", env=env, timeout=30)
    finally:
        silent.close()
    assert r.returncode == 1, r.stderr
    assert f"{silent.url}/x.nc" in r.stderr and "no answer within 1 s" in r.stderr, r.stderr


def test_a_function_reading_a_source_that_stops_answering_gives_504(cloudify, tmp_path):
    root = tmp_path / "web"
    root.mkdir()
    small_file(str(root / "x.nc"))
    web = RangeServer(str(root))
    bucket = str(tmp_path / "b")
    r = run_index(cloudify, bucket, f"{web.url}/x.nc")
    assert r.returncode == 0, r.stderr
    port = int(web.url.rsplit(":", 1)[1])
    web.stop()
    silent = Silent(port)
    env = dict(os.environ, CLOUDIFY_SOURCE_TIMEOUT_SECONDS="1")
    server = Server(cloudify, bucket, env=env)
    try:
        resp = server.get("/datasets/d/kerchunk/v/0.0")
        assert resp.status_code == 504, resp.text
        assert "timed out" in resp.json()["detail"]
    finally:
        server.stop()
        silent.close()


class Redirecting(ThreadingHTTPServer):
    """Answers every request with a redirect to `target`, and records the headers sent."""

    def __init__(self, target):
        self.seen = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_HEAD(self):  # noqa: N802
                outer.seen.append(self.headers.get("X-Api-Key"))
                self.send_response(302)
                self.send_header("Location", target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD  # noqa: N815

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_credentials_are_never_sent_where_a_redirect_leads(cloudify, tmp_path):
    root = tmp_path / "web"
    root.mkdir()
    small_file(str(root / "x.nc"))
    elsewhere = RangeServer(str(root))
    keys = []
    original = elsewhere.httpd.RequestHandlerClass.refused

    def refused(handler):
        keys.append(handler.headers.get("X-Api-Key"))
        return original(handler)

    elsewhere.httpd.RequestHandlerClass.refused = refused
    origin = Redirecting(elsewhere.url)
    try:
        env = dict(os.environ, CLOUDIFY_HTTP_HEADERS=json.dumps(
            {f"{origin.url}/": {"X-Api-Key": "secret-key-1"}}))
        r = run_index(cloudify, str(tmp_path / "b1"), f"{origin.url}/x.nc", env=env)
        assert r.returncode == 1 and "outside the prefix" in r.stderr, r.stderr
        assert "secret-key-1" not in r.stderr
        assert origin.seen and all(k == "secret-key-1" for k in origin.seen)
        assert keys == [], "the credential or any request reached the other server"
        # With no credential configured, a redirect is followed.
        r = run_index(cloudify, str(tmp_path / "b2"), f"{origin.url}/x.nc")
        assert r.returncode == 0, r.stderr
        assert keys and not any(keys)
    finally:
        origin.shutdown()
        elsewhere.stop()


def vm_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0


def test_a_long_dimension_written_little_costs_little(cloudify, tmp_path, start_server):
    """A 4-million-step dimension with 3 steps written: small tables, fill elsewhere, and a
    reduction over all of it refused before anything its size sizes is built."""
    path = str(tmp_path / "long.nc")
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", 4_000_000)
        nc.createDimension("x", 2)
        t = nc.createVariable("time", "f8", ("time",), chunksizes=(1,), fill_value=-1.0)
        v = nc.createVariable("v", "f4", ("time", "x"), chunksizes=(1, 2), fill_value=-9.0)
        t[:3] = [0, 1, 2]
        v[:3] = np.arange(6, dtype="f4").reshape(3, 2)
    assert os.path.getsize(path) < 64 << 10
    bucket = str(tmp_path / "b")
    r = run_index(cloudify, bucket, path)
    assert r.returncode == 0, r.stderr
    tables = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(bucket)
                 for f in fs if f.endswith(".bin"))
    assert tables < 4096, tables
    server = start_server(bucket)
    info = server.get("/datasets/d/info").json()
    assert info["variables"]["v"]["shape"] == [4_000_000, 2]
    assert "too" in info["routes"]["kerchunk"]["excluded"]["v"] or \
        "claims more" in info["routes"]["kerchunk"]["excluded"]["v"]
    import xarray as xr
    # Without its 4-million-chunk coordinate, which xarray would load as an index.
    with xr.open_dataset(f"{server.url}/datasets/d/zarr", engine="zarr", consolidated=True,
                         zarr_format=2, drop_variables=["time"]) as ds:
        assert ds["v"][:3].values.tolist() == [[0, 1], [2, 3], [4, 5]]
        assert np.isnan(ds["v"][3_999_999].values).all()
    r = server.get("/datasets/d/reduce/v/time/mean")
    assert r.status_code == 413, r.text
    assert vm_hwm_mib(server.proc.pid) < 256


def rewrite_keeping_size_and_time(path, value):
    st = os.stat(path)
    data = bytearray(open(path, "rb").read())
    tmp = path + ".new"
    small_file(tmp, value)
    new = open(tmp, "rb").read()
    os.remove(tmp)
    assert len(new) == len(data)
    with open(path, "r+b") as f:
        f.write(new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


def test_a_source_rewritten_with_its_size_and_time_is_refused(cloudify, tmp_path, start_server):
    bucket = str(tmp_path / "b")
    os.makedirs(os.path.join(bucket, "src"))
    path = small_file(os.path.join(bucket, "src", "x.nc"))
    assert run_index(cloudify, bucket, path).returncode == 0
    rewrite_keeping_size_and_time(path, 100.0)
    server = start_server(bucket)
    r = server.get("/datasets/d/zarr/v/0.0")
    assert r.status_code == 409, r.text
    assert "changed" in r.json()["detail"] or "no longer" in r.json()["detail"]


def table_of(bucket, var):
    version = json.load(open(os.path.join(bucket, "index.json")))["datasets"]["d"]["version"]
    folder = os.path.join(bucket, "datasets", "d", version)
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    return os.path.join(folder, manifest["arrays"][var]["table"])


@pytest.mark.parametrize("damage", ["swap", "garbage"])
def test_a_damaged_chunk_table_is_a_502(cloudify, tmp_path, start_server, damage):
    bucket = str(tmp_path / "b")
    path = small_file(str(tmp_path / "x.nc"))
    assert run_index(cloudify, bucket, path).returncode == 0
    table = table_of(bucket, "v")
    data = bytearray(open(table, "rb").read())
    header, record = 16, 28
    if damage == "swap":
        a, b = data[header:header + record], data[header + record:header + 2 * record]
        data[header:header + 2 * record] = b + a
    else:
        data[header:] = os.urandom(len(data) - header)
    open(table, "wb").write(bytes(data))
    server = start_server(bucket)
    for key in ["zarr/v/0.0", "kerchunk/v/1.0"]:
        r = server.get(f"/datasets/d/{key}")
        assert r.status_code == 502, (key, r.status_code, r.text)
        assert "checksum" in r.json()["detail"], r.text


def test_index_json_replaced_by_a_folder_is_a_502(cloudify, tmp_path, start_server):
    bucket = str(tmp_path / "b")
    assert run_index(cloudify, bucket, small_file(str(tmp_path / "x.nc"))).returncode == 0
    os.remove(os.path.join(bucket, "index.json"))
    os.mkdir(os.path.join(bucket, "index.json"))
    r = start_server(bucket).get("/datasets")
    assert r.status_code == 502, r.text


@pytest.mark.parametrize("key", ["stac/catalog.json", "refs.json"])
def test_symlinks_out_of_the_bucket_are_not_followed(cloudify, tmp_path, start_server, key):
    bucket = str(tmp_path / "b")
    assert run_index(cloudify, bucket, small_file(str(tmp_path / "x.nc"))).returncode == 0
    secret = tmp_path / "secret.json"
    secret.write_text('{"secret": "do-not-serve"}')
    version = json.load(open(os.path.join(bucket, "index.json")))["datasets"]["d"]["version"]
    target = os.path.join(bucket, key if key.startswith("stac") else
                          os.path.join("datasets", "d", version, key))
    os.remove(target)
    os.symlink(secret, target)
    server = start_server(bucket)
    path = "/stac/catalog.json" if key.startswith("stac") else f"/datasets/d/{version}/refs.json"
    r = server.get(path)
    assert r.status_code >= 400 and "do-not-serve" not in r.text, (r.status_code, r.text)


def every_answer(server, version):
    paths = ["/", "/datasets", "/datasets/d/info", "/datasets/d/stac", "/datasets/d",
             "/datasets/d/dict", f"/datasets/d/{version}/refs.json", "/stac/catalog.json",
             "/stac/c/collection.json", "/stac/c/d/d.json", "/stac-collection-all.json",
             "/intake.yaml", "/datasets/d/zarr/.zmetadata", "/datasets/d/zarr/v/0.0",
             "/datasets/d/zarr/nosuch/0.0"]
    return {p: server.get(p).text for p in paths}


def test_answers_name_no_file_path_or_source_url(cloudify, tmp_path, start_server):
    root = tmp_path / "web"
    root.mkdir()
    local = small_file(str(tmp_path / "local.nc"))
    small_file(str(root / "remote.nc"))
    web = RangeServer(str(root))
    try:
        url = f"{web.url}/remote.nc?token=secret-token-7"
        bucket = str(tmp_path / "b")
        r = subprocess.run([cloudify, "index", "--bucket", bucket, "--dataset", "d",
                            "--collection", "c", local], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        version = json.load(open(os.path.join(bucket, "index.json")))["datasets"]["d"]["version"]
        plain = start_server(bucket)
        for path, text in every_answer(plain, version).items():
            assert str(tmp_path) not in text and "file://" not in text, (path, text[:300])
        import xarray as xr
        from test_kerchunk import reference_store
        store = reference_store(f"{plain.url}/datasets/d/{version}/refs.json")
        with xr.open_dataset(store, engine="zarr", consolidated=False,
                             zarr_format=2) as ds, xr.open_dataset(local) as expected:
            assert (ds["v"].values == expected["v"].values).all()
        # A remote source with a token in its query: never published, even when sources are.
        r = run_index(cloudify, str(tmp_path / "b2"), url)
        assert r.returncode == 0, r.stderr
        version = json.load(open(tmp_path / "b2" / "index.json"))["datasets"]["d"]["version"]
        for extra in [(), ("--publish-sources",)]:
            s = start_server(str(tmp_path / "b2"), *extra)
            answers = every_answer(s, version)
            for path, text in answers.items():
                assert "secret-token-7" not in text, (path, text[:300])
            info = json.loads(answers["/datasets/d/info"])
            assert info["sources"][0]["name"] == "remote.nc"
            assert info["sources"][0].get("url") == (f"{web.url}/remote.nc" if extra else None)
    finally:
        web.stop()


def test_control_characters_in_a_name_are_left_out_with_the_reason(cloudify, tmp_path,
                                                                   start_server):
    import h5py

    # netCDF-C refuses such names; HDF5 takes any.
    path = str(tmp_path / "odd.h5")
    with h5py.File(path, "w") as f:
        f["ok"] = np.arange(3, dtype="f4")
        f["bad\x01name"] = np.arange(3, dtype="f4")
    bucket = str(tmp_path / "b")
    r = run_index(cloudify, bucket, path)
    assert r.returncode == 0, r.stderr
    assert "control characters" in r.stderr
    info = start_server(bucket).get("/datasets/d/info").json()
    assert "ok" in info["variables"] and "control characters" in info["skipped"]["bad\x01name"]


def test_small_faults_of_the_command_line(cloudify, tmp_path):
    path = small_file(str(tmp_path / "x.nc"))
    bucket = str(tmp_path / "b")
    # Its output read by a command that stops reading: no panic on the broken pipe.
    r = subprocess.run(["bash", "-c", f'set -o pipefail; "{cloudify}" index --bucket {bucket} '
                        f'--dataset d {path} | head -c0; echo "${{PIPESTATUS[0]}}"'],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "0" and "panicked" not in r.stderr, (r.stdout, r.stderr)
    for args, fault in [(["--chunks", "t=1,t=2"], "twice"),
                        (["--public-url", "javascript:alert(1)"], "PUBLIC_URL")]:
        r = run_index(cloudify, str(tmp_path / "b2"), path, *args)
        assert r.returncode == 1 and fault in r.stderr, (args, r.stderr)


def test_a_lock_left_by_a_killed_indexer_does_not_block_the_next(cloudify, tmp_path):
    bucket = str(tmp_path / "b")
    path = small_file(str(tmp_path / "x.nc"))
    assert run_index(cloudify, bucket, path).returncode == 0
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = os.path.join(bucket, "index.json.lock")
    with open(lock, "w") as f:
        f.write(f"{dead.pid} 1")
    import time
    old = time.time() - 5  # settled, not yet stale by its age
    os.utime(lock, (old, old))
    small_file(path, 5.0)
    # Waiting out the lock would take 30 s and fail; the timeout is a hang guard.
    r = run_index(cloudify, bucket, path, timeout=25)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(lock)


def test_hdf5_metadata_that_fails_its_checksum_is_refused(cloudify, tmp_path):
    """A byte changed inside an object header that carries a checksum: libhdf5 refuses the
    file, and so does the indexer, naming it, rather than index what the damage says."""
    import h5py

    path = small_file(str(tmp_path / "x.nc"))
    raw = bytearray(open(path, "rb").read())
    headers = [i for i in range(len(raw)) if raw[i:i + 4] == b"OHDR"]
    assert headers, "netCDF-4 writes version 2 object headers, which carry checksums"
    raw[headers[-1] + 16] ^= 0x01
    bad = str(tmp_path / "bad.nc")
    open(bad, "wb").write(bytes(raw))
    def read(name, obj):
        if isinstance(obj, h5py.Dataset):
            obj[()]  # a value returned would end the visit

    with pytest.raises(Exception, match="checksum"):
        with h5py.File(bad, "r") as f:
            f.visititems(read)
    r = run_index(cloudify, str(tmp_path / "b"), bad)
    assert r.returncode == 1 and "bad.nc" in r.stderr and "checksum" in r.stderr.lower(), r.stderr
