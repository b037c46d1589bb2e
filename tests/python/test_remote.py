"""Sources behind HTTP: indexed through ranged reads of their metadata and coordinates only,
served by `cloudify serve` through ranged reads, and checked against the recorded size and tag."""
import json
import os
import shutil
import subprocess

import pytest
import xarray as xr

from compare import datasets_equal
from make_files import data_chunk_bytes, mostly_data
from range_server import RangeServer
from servers import OPERATOR, Server


@pytest.fixture
def web(tmp_path):
    root = tmp_path / "web"
    root.mkdir()
    server = RangeServer(str(root))
    yield root, server
    server.stop()


def index(cloudify, bucket, ds_id, *sources):
    return subprocess.run([cloudify, "index", "--bucket", bucket, "--dataset", ds_id, *sources],
                          capture_output=True, text=True)


def test_remote_sources_are_indexed_from_metadata_and_coordinates_only(cloudify, web, tmp_path,
                                                                       start_server):
    root, server = web
    path = mostly_data(str(root / "big.nc"))
    size = os.path.getsize(path)
    metadata_and_coordinates = size - data_chunk_bytes(path, "noise")
    assert metadata_and_coordinates < size / 50
    bucket = str(tmp_path / "bucket")
    r = index(cloudify, bucket, "remote", f"{server.url}/big.nc")
    assert r.returncode == 0, r.stderr
    assert server.sent <= metadata_and_coordinates + size // 100, (server.sent, size)
    # Served through ranged reads of the same server.
    function = start_server(bucket, "--publish-sources")
    info = function.get("/datasets/remote/info").json()
    assert info["sources"][0]["url"] == f"{server.url}/big.nc"
    for view, fmt in [("zarr", 2), ("kerchunk", 2)]:
        with xr.open_dataset(path, engine="netcdf4") as expected, \
                xr.open_dataset(f"{function.url}/datasets/remote/{view}", engine="zarr",
                                zarr_format=fmt, consolidated=True) as actual:
            datasets_equal(actual, expected)


def test_a_changed_remote_source_is_409_and_a_gone_one_502(cloudify, web, generated, tmp_path,
                                                           start_server):
    root, server = web
    with open(generated["mixed"], "rb") as f:
        (root / "m.nc").write_bytes(f.read())
    bucket = str(tmp_path / "bucket")
    assert index(cloudify, bucket, "m", f"{server.url}/m.nc").returncode == 0
    function = start_server(bucket, *OPERATOR)
    assert function.get("/datasets/m/zarr/zlib_shuffle/0.0.0").status_code == 200
    with open(root / "m.nc", "ab") as f:
        f.write(b"\0" * 3)
    r = function.get("/datasets/m/zarr/zlib_shuffle/1.0.0")
    assert r.status_code == 409 and "m.nc" in r.json()["detail"], r.text
    r = subprocess.run([cloudify, "check", "--bucket", bucket], capture_output=True, text=True)
    assert r.returncode == 1 and f"{server.url}/m.nc: changed" in r.stdout, r.stdout
    os.remove(root / "m.nc")
    r = function.get("/datasets/m/zarr/zlib_shuffle/1.1.0")
    assert r.status_code == 502 and "missing" in r.json()["detail"], r.text


def test_a_missing_or_unreachable_url_is_an_error_naming_it(cloudify, web, tmp_path):
    root, server = web
    bucket = str(tmp_path / "bucket")
    r = index(cloudify, bucket, "x", f"{server.url}/nothing.nc")
    assert r.returncode != 0 and "nothing.nc" in r.stderr and "404" in r.stderr, r.stderr
    r = index(cloudify, bucket, "x", "http://127.0.0.1:9/closed.nc")
    assert r.returncode != 0 and "closed.nc" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(bucket, "index.json"))


TOKEN = "Bearer cloudify-test-token-do-not-leak"


def test_sources_behind_a_token_are_read_with_the_configured_headers(cloudify, generated,
                                                                     tmp_path):
    root = tmp_path / "private"
    root.mkdir()
    shutil.copyfile(generated["mixed"], root / "m.nc")
    private = RangeServer(str(root), require={"Authorization": TOKEN})
    other = RangeServer(str(root))
    servers = []
    try:
        bucket = str(tmp_path / "bucket")
        url = f"{private.url}/m.nc"
        # Without the header: refused, naming the file and where credentials go.
        r = index(cloudify, bucket, "m", url)
        assert r.returncode != 0 and "m.nc" in r.stderr and "401" in r.stderr, r.stderr
        assert "CLOUDIFY_HTTP_HEADERS" in r.stderr, r.stderr
        env = dict(os.environ, CLOUDIFY_HTTP_HEADERS=json.dumps(
            {f"{private.url}/": {"Authorization": TOKEN}}))
        run = lambda *a: subprocess.run([cloudify, *a], capture_output=True, text=True, env=env)  # noqa: E731
        r = run("index", "--bucket", bucket, "--dataset", "m", url)
        assert r.returncode == 0, r.stderr
        # The token goes only under its prefix: not to another host with the same files.
        r = run("index", "--bucket", bucket, "--dataset", "o", f"{other.url}/m.nc")
        assert r.returncode == 0, r.stderr
        assert private.authorizations and set(private.authorizations) == {TOKEN}
        assert other.authorizations == []
        # Served without the configuration: a 502 naming the source, never the token.
        plain = Server(cloudify, bucket, *OPERATOR)
        servers.append(plain)
        r = plain.get("/datasets/m/zarr/zlib_shuffle/0.0.0")
        assert r.status_code == 502 and "m.nc" in r.text and "401" in r.text, r.text
        assert "do-not-leak" not in r.text
        served = Server(cloudify, bucket, *OPERATOR, env=env)
        servers.append(served)
        info = served.get("/datasets/m/info").json()
        left_out = set(info["skipped"]) | set(info["routes"]["zarr"]["excluded"])
        with xr.open_dataset(generated["mixed"], engine="netcdf4") as expected, \
                xr.open_dataset(f"{served.url}/datasets/m/zarr", engine="zarr",
                                consolidated=True) as actual:
            datasets_equal(actual, expected.load(), left_out)
        # A malformed configuration is an error naming the variable, not the value.
        bad = dict(env, CLOUDIFY_HTTP_HEADERS=json.dumps({"https://x": {"Authorization": TOKEN}}))
        r = subprocess.run([cloudify, "check", "--bucket", bucket], capture_output=True,
                           text=True, env=bad)
        assert r.returncode != 0 and "CLOUDIFY_HTTP_HEADERS" in r.stderr, r.stderr
        assert "do-not-leak" not in r.stderr + r.stdout
    finally:
        for s in servers:
            s.stop()
        private.stop()
        other.stop()
