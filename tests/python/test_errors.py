"""Errors, over HTTP and on the command line: each with its status or message, none served by
reading anything the index does not name."""
import http.client
import json
import os
import shutil
import subprocess

import pytest
import requests

from servers import OPERATOR


def raw_get(server, path, method="GET"):
    """Send `path` byte for byte (no client-side normalisation of dot segments)."""
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request(method, path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


@pytest.mark.parametrize("path", [
    "/datasets/mixed/kerchunk/../../index.json",
    "/datasets/mixed/kerchunk/%2e%2e/%2e%2e/index.json",
    "/datasets/mixed/kerchunk/zlib_shuffle%2F0.0.0",
    "/datasets/mixed/kerchunk/zlib_shuffle%5c0.0.0",
    "/datasets/mixed/kerchunk/zlib_shuffle\\0.0.0",
    "/datasets/mixed/kerchunk//etc/passwd",
    "/datasets/..%2f..%2fetc/info",
    "/datasets/mixed/kerchunk/zlib_shuffle/0.0",
    "/datasets/mixed/kerchunk/zlib_shuffle/a.b.c",
    "/datasets/mixed/kerchunk/zlib_shuffle/0.0.0.0",
])
def test_bad_keys_are_400(server, path):
    status, body = raw_get(server, path)
    assert status == 400, body
    err = json.loads(body)
    assert err["error"] == "bad request" and err["detail"]


@pytest.mark.parametrize("path", [
    "/datasets/nosuch/kerchunk/.zmetadata",
    "/datasets/mixed/kerchunk/nosuch/.zarray",
    "/datasets/mixed/kerchunk/zlib_shuffle/3.0.0",
    "/datasets/mixed/kerchunk/never_written/0.0",
    "/datasets/mixed/kerchunk/fletcher_shuffle_f8/.zarray",
    "/datasets/mixed/kerchunk/zarr.json",
    "/nosuch",
])
def test_unknown_things_are_404(server, path):
    status, body = raw_get(server, path)
    assert status == 404, body
    assert json.loads(body)["detail"]


def test_other_methods_are_405(server):
    for method in ["POST", "PUT", "DELETE"]:
        status, body = raw_get(server, "/datasets/mixed/kerchunk/.zgroup", method)
        assert status == 405
        assert "GET" in json.loads(body)["detail"]


def test_head_matches_get(server):
    for path in ["/datasets/mixed/kerchunk/.zmetadata", "/datasets/mixed/kerchunk/zlib_shuffle/0.0.0"]:
        get = server.get(path)
        head = requests.head(server.url + path, timeout=30)
        assert head.status_code == get.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) == len(get.content)
        assert head.headers["access-control-allow-origin"] == "*"


def index(cloudify, bucket, ds_id, *paths):
    return subprocess.run([cloudify, "index", "--bucket", bucket, "--dataset", ds_id, *paths],
                          capture_output=True, text=True)


def test_truncated_sources_are_409_and_missing_ones_502(cloudify, generated, tmp_path, start_server):
    bucket = str(tmp_path / "bucket")
    src = tmp_path / "copy.nc"
    shutil.copy(generated["mixed"], src)
    assert index(cloudify, bucket, "m", str(src)).returncode == 0
    server = start_server(bucket, *OPERATOR)
    chunk = "/datasets/m/kerchunk/zlib_shuffle/2.2.1"
    assert server.get(chunk).status_code == 200
    with open(src, "r+b") as f:
        f.truncate(4096)  # keeps the superblock, cuts every chunk
    r = server.get(chunk)
    assert r.status_code == 409 and "reindex" in r.json()["detail"], r.text
    os.remove(src)
    r = server.get(chunk)
    assert r.status_code == 502 and str(src) in r.json()["detail"], r.text
    assert server.get("/datasets/m/kerchunk/.zmetadata").status_code == 200


def test_cli_errors_name_the_file_and_write_nothing(cloudify, generated, tmp_path):
    bucket = str(tmp_path / "bucket")
    text = tmp_path / "notes.nc"
    text.write_text("this is not HDF5\n" * 10)
    truncated = tmp_path / "truncated.nc"
    with open(generated["mixed"], "rb") as f:
        truncated.write_bytes(f.read(2000))
    for bad, fault in [(str(tmp_path / "missing.nc"), "missing.nc"), (str(text), "notes.nc"),
                       (str(truncated), "truncated.nc")]:
        r = index(cloudify, bucket, "bad", bad)
        assert r.returncode != 0
        assert fault in r.stderr, r.stderr
        assert not os.path.exists(os.path.join(bucket, "index.json"))
        assert not os.path.exists(os.path.join(bucket, "datasets"))
    r = index(cloudify, bucket, "../escape", generated["mixed"])
    assert r.returncode != 0 and "dataset id" in r.stderr
    assert not os.path.exists(os.path.join(bucket, "index.json"))


def test_truncated_netcdf3_names_the_file_and_the_fault(cloudify, generated, tmp_path):
    """Cut in the header: the file is named; cut in the data: the variable is named too."""
    with open(generated["nc3_classic"], "rb") as f:
        whole = f.read()
    bucket = str(tmp_path / "bucket")
    for cut, fault in [(200, "header runs past the end"), (len(whole) - 10, "past the end of the file")]:
        path = tmp_path / f"cut{cut}.nc"
        path.write_bytes(whole[:cut])
        r = index(cloudify, bucket, "nc3", str(path))
        assert r.returncode != 0
        assert f"cut{cut}.nc" in r.stderr and fault in r.stderr, r.stderr
        if cut > 200:
            assert "variable" in r.stderr, r.stderr
        assert not os.path.exists(os.path.join(bucket, "index.json"))


def test_unsupported_filter_is_an_error_naming_variable_and_filter(cloudify, tmp_path):
    import h5py
    import numpy as np

    path = tmp_path / "lzf.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("fine", data=np.arange(10.0))
        f.create_dataset("squeezed", data=np.ones((10, 10)), compression="lzf", chunks=(5, 5))
    bucket = str(tmp_path / "bucket")
    r = index(cloudify, bucket, "lzf", str(path))
    assert r.returncode != 0
    assert "lzf.h5" in r.stderr and '"squeezed"' in r.stderr and "32000 (lzf)" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(bucket, "index.json"))


def test_skipped_variables_are_warned_about(cloudify, generated, tmp_path):
    r = index(cloudify, str(tmp_path / "bucket"), "mixed", generated["mixed"])
    assert r.returncode == 0
    assert "warning:" in r.stderr and '"vlen_strings"' in r.stderr and "mixed.nc" in r.stderr


def test_two_datasets_in_one_bucket_and_idempotent_reindex(cloudify, generated, tmp_path,
                                                            start_server):
    bucket = str(tmp_path / "bucket")
    assert index(cloudify, bucket, "a", generated["mixed"]).returncode == 0
    assert index(cloudify, bucket, "b", generated["many_chunks"]).returncode == 0
    again = index(cloudify, bucket, "a", generated["mixed"])
    assert again.returncode == 0 and "0 objects written" in again.stdout, again.stdout
    # A failed run leaves the last good index serving.
    assert index(cloudify, bucket, "a", str(tmp_path / "missing.nc")).returncode != 0
    server = start_server(bucket)
    assert server.get("/datasets").json() == ["a", "b"]
    assert server.get("/datasets/a/kerchunk/.zmetadata").status_code == 200
    assert server.get("/datasets/b/kerchunk/values/.zarray").json()["chunks"] == [2, 20]
