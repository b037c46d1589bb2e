"""Zarr stores and Icechunk repositories made by other tools (xarray's to_zarr, into a folder and
into an Icechunk session; VirtualiZarr's to_icechunk), indexed as sources and served through
`/zarr`, `/zarr3` and `/kerchunk` equal to the NetCDF file they were made from, read by
netCDF4. The stores are made by the Python 3.12 venv with icechunk (.venv-ic)."""
import json
import os
import subprocess

import numpy as np
import pytest
import xarray as xr

import make_files
from compare import datasets_equal
from range_server import RangeServer
from servers import index, make_stores

ROUTES = [("zarr", 2), ("zarr3", 3), ("kerchunk", 2)]


def opened(server, path, zarr_format):
    return xr.open_dataset(server.url + path, engine="zarr", zarr_format=zarr_format,
                           consolidated=True).load()


def failing(cloudify, bucket, *args):
    out = subprocess.run([cloudify, "index", "--bucket", bucket, *args], capture_output=True,
                         text=True)
    assert out.returncode != 0, out.stdout
    return out.stderr


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A NetCDF file, the stores made from it (in the bucket, so the functions read them by key
    too), and their snapshots."""
    bucket = tmp_path_factory.mktemp("bucket")
    source = make_files.model_piece(str(bucket / "src.nc"), np.arange(24.0), chunks=(6, 4, 5))
    snapshots = make_stores(source, str(bucket / "stores"))
    return str(bucket), source, snapshots


STORES = {
    "native": ("native.icechunk", ()),
    "native-first": ("native.icechunk", ("--ref", "first")),
    "virtual": ("virtual.icechunk", ()),
    "v3": ("v3.zarr", ()),
    "v2": ("v2.zarr", ()),
}


def test_stores_are_served_equal_to_the_file_they_were_made_from(cloudify, made, start_server):
    bucket, source, snapshots = made
    for ds_id, (store, args) in STORES.items():
        index(cloudify, bucket, ds_id, os.path.join(bucket, "stores", store), *args)
    # A snapshot id pins the same data as the tag on it.
    index(cloudify, bucket, "native-snapshot", os.path.join(bucket, "stores", "native.icechunk"),
          "--ref", snapshots["native"][0])
    server = start_server(bucket)
    with xr.open_dataset(source, engine="netcdf4") as ds:
        expected = ds.load()
    # The native repository's main holds a second commit: tas plus one.
    plus_one = expected.assign(tas=expected.tas + 1)
    for ds_id in [*STORES, "native-snapshot"]:
        want = plus_one if ds_id == "native" else expected
        for route, zarr_format in ROUTES:
            try:
                datasets_equal(opened(server, f"/datasets/{ds_id}/{route}", zarr_format), want)
            except AssertionError as e:
                raise AssertionError(f"{ds_id} /{route}: {e}") from e
    info = server.get("/datasets/native/info").json()
    assert info["skipped"] == {}, info["skipped"]


def test_stores_behind_http_are_served_equal(cloudify, made, start_server):
    """Over HTTP nothing can be listed: a repository is read as Icechunk reads it, a Zarr store
    through its consolidated metadata, each chunk key of its grid asked for."""
    bucket, source, _ = made
    web = RangeServer(os.path.join(bucket, "stores"))
    try:
        ids = {f"http-{ds_id}": (store, args) for ds_id, (store, args) in STORES.items()}
        for ds_id, (store, args) in ids.items():
            index(cloudify, bucket, ds_id, f"{web.url}/{store}/", *args)
        server = start_server(bucket)
        with xr.open_dataset(source, engine="netcdf4") as ds:
            expected = ds.load()
        for ds_id in ids:
            want = expected.assign(tas=expected.tas + 1) if ds_id == "http-native" else expected
            for route, zarr_format in ROUTES:
                try:
                    datasets_equal(opened(server, f"/datasets/{ds_id}/{route}", zarr_format),
                                   want)
                except AssertionError as e:
                    raise AssertionError(f"{ds_id} /{route}: {e}") from e
        version = json.load(open(os.path.join(bucket, "index.json")))["datasets"]["http-v3"][
            "version"]
        manifest = json.load(open(os.path.join(bucket, "datasets", "http-v3", version,
                                               "manifest.json")))
        assert all(s["url"].startswith(web.url) for s in manifest["sources"]), manifest["sources"]
    finally:
        web.stop()


def test_a_new_commit_changes_the_unpinned_answer_and_not_the_pinned(cloudify, made,
                                                                     start_server, tmp_path):
    _, source, _ = made
    bucket = str(tmp_path / "bucket")
    repo = str(tmp_path / "native.icechunk")
    subprocess.run(["cp", "-r", os.path.join(made[0], "stores", "native.icechunk"), repo],
                   check=True)
    index(cloudify, bucket, "n", repo)
    again = index(cloudify, bucket, "n", repo)
    assert "0 objects written, index.json unchanged" in again, again
    server = start_server(bucket, "--index-ttl", "0")
    version = json.load(open(os.path.join(bucket, "index.json")))["datasets"]["n"]["version"]
    keys = ["/zarr/tas/1.1.0", "/zarr3/tas/c/1/1/0", "/kerchunk/tas/1.1.0"]
    before = {k: server.get(f"/datasets/n{k}").content for k in keys}
    make_stores("--commit", repo)
    index(cloudify, bucket, "n", repo)
    newer = json.load(open(os.path.join(bucket, "index.json")))["datasets"]["n"]["version"]
    assert newer != version
    for k in keys:
        unpinned, pinned = server.get(f"/datasets/n{k}"), server.get(f"/datasets/n@{version}{k}")
        assert unpinned.status_code == pinned.status_code == 200, (k, unpinned.text)
        assert unpinned.content != before[k], k
        assert pinned.content == before[k], k
    with xr.open_dataset(source, engine="netcdf4") as ds:
        datasets_equal(opened(server, "/datasets/n/zarr3", 3), ds.load().assign(tas=ds.tas + 2))
        datasets_equal(opened(server, f"/datasets/n@{version}/zarr3", 3),
                       ds.load().assign(tas=ds.tas + 1))


def test_what_cannot_be_served_is_named(cloudify, made, tmp_path):
    bucket, source, _ = made
    stores = os.path.join(bucket, "stores")
    elsewhere = str(tmp_path / "bucket")
    # zarr-python's default v2 compressor is blosc, which the core does not decode yet.
    err = failing(cloudify, elsewhere, "--dataset", "b", os.path.join(stores, "v2-blosc.zarr"))
    assert "no array to serve" in err and 'tas: its codec "blosc"' in err, err
    err = failing(cloudify, elsewhere, "--dataset", "r", os.path.join(stores, "native.icechunk"),
                  "--ref", "nope")
    assert '"nope" is no branch, tag or snapshot id' in err, err
    err = failing(cloudify, elsewhere, "--dataset", "r", source, "--ref", "main")
    assert "--ref names a branch, tag or snapshot" in err, err
    err = failing(cloudify, elsewhere, "--dataset", "r", os.path.join(stores, "v3.zarr"),
                  "--ref", "main")
    assert "this is a Zarr store" in err, err
    err = failing(cloudify, elsewhere, "--dataset", "r", os.path.join(stores, "v3.zarr"), source)
    assert "a Zarr store or Icechunk repository is a dataset alone" in err, err


def test_a_virtual_source_modified_after_the_commit_is_refused(cloudify, made, tmp_path):
    """VirtualiZarr's references carry the time they were made: a source modified later is
    refused by the indexer, as Icechunk's readers refuse it, rather than served."""
    _, source, _ = made
    copy = str(tmp_path / "src.nc")
    subprocess.run(["cp", source, copy], check=True)
    repo = str(tmp_path / "repo")
    make_stores(copy, repo)
    bucket = str(tmp_path / "bucket")
    index(cloudify, bucket, "v", os.path.join(repo, "virtual.icechunk"))
    st = os.stat(copy)
    os.utime(copy, (st.st_atime, st.st_mtime + 30))
    err = failing(cloudify, bucket, "--dataset", "v2", os.path.join(repo, "virtual.icechunk"))
    assert "changed since the Icechunk repository referenced it" in err, err
