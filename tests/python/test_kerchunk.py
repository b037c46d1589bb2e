"""`/kerchunk` end to end: xarray through `cloudify serve` sees exactly what netCDF4 sees."""
import os

import pytest
import xarray as xr

from compare import datasets_equal
from servers import sample_files, sample_id
import make_files

IDS = list(make_files.GENERATORS) + [sample_id(p) for p in sample_files()]


def left_out(server, ds_id):
    info = server.get(f"/datasets/{ds_id}/info").json()
    return set(info["routes"]["kerchunk"]["excluded"]) | set(info["skipped"])


@pytest.mark.parametrize("ds_id", IDS)
def test_served_dataset_equals_source(server, datasets, ds_id):
    path = datasets[1][ds_id]
    url = f"{server.url}/datasets/{ds_id}/kerchunk"
    out = left_out(server, ds_id)
    with xr.open_dataset(path, engine="netcdf4") as expected, \
            xr.open_dataset(url, engine="zarr") as actual:
        datasets_equal(actual, expected, out)
    with xr.open_dataset(path, engine="netcdf4", decode_cf=False) as expected, \
            xr.open_dataset(url, engine="zarr", decode_cf=False) as actual:
        # A raw open sees the declared fill value as `_FillValue` on both sides.
        datasets_equal(actual, expected, out, raw=True)


def test_what_is_left_out_is_named_with_a_reason(server):
    info = server.get("/datasets/mixed/info").json()
    excluded = info["routes"]["kerchunk"]["excluded"]
    assert set(excluded) == {"fletcher_shuffle_f8"}
    assert "shuffle" in excluded["fletcher_shuffle_f8"]
    assert set(info["skipped"]) == {"vlen_strings"}
    assert "variable-length string" in info["skipped"]["vlen_strings"]
    assert len(info["variables"]) >= 20


def test_mixed_covers_every_storage_case(server):
    v = server.get("/datasets/mixed/info").json()["variables"]
    ids = lambda name: [c["id"] for c in v[name]["codecs"]]  # noqa: E731
    assert ids("zlib_shuffle") == ["shuffle", "zlib"]
    assert ids("fletcher_i2") == ["fletcher32"]
    assert ids("fletcher_shuffle_zlib_i2") == ["fletcher32", "shuffle", "zlib"]
    assert ids("uncompressed_chunked") == []
    assert v["big_endian"]["dtype"] == ">f8"
    assert v["contiguous"]["chunks"] == [30, 40] and v["contiguous"]["stored_chunks"] == 1
    assert v["never_written"]["stored_chunks"] == 0
    assert v["partial"]["stored_chunks"] < v["partial"]["chunk_grid"][0] * 12
    assert v["short"]["shape"] == [10, 30]
    assert v["uneven"]["chunk_grid"] == [3, 5, 5]
    assert v["scalar"]["shape"] == [] and v["scalar"]["stored_chunks"] == 1
    assert v["lat2d"]["dims"] == ["y", "x"]


def test_fill_values_follow_xarray(server):
    md = server.get("/datasets/mixed/kerchunk/.zmetadata").json()["metadata"]
    assert md["partial/.zarray"]["fill_value"] == "NaN"
    assert md["packed/.zarray"]["fill_value"] == -32767
    assert md["zlib_shuffle/.zarray"]["fill_value"] is None
    assert "_FillValue" not in md["packed/.zattrs"]


def references(server, ds_id):
    """The kerchunk export of a dataset's current version, through the function, as a Zarr
    store for xarray."""
    import fsspec

    version = server.get(f"/datasets/{ds_id}/info").json()["version"]
    base = f"{server.url}/datasets/{ds_id}/{version}"
    # JSON references name the function's own chunk URLs (this server does not publish its
    # sources); the Parquet ones, published, name the files.
    if ds_id == "big":
        fs = fsspec.filesystem("reference", fo=f"{base}/refs.parq", remote_protocol="file")
        return base, fs.get_mapper("")
    return base, reference_store(f"{base}/refs.json")


def reference_store(url):
    """A Zarr store of JSON kerchunk references whose chunks are behind HTTP: zarr-python 3
    reads it asynchronously, so the reference and HTTP filesystems must both be."""
    import fsspec
    import zarr

    fs = fsspec.filesystem("reference", fo=url, remote_protocol="http", asynchronous=True,
                           remote_options={"asynchronous": True})
    return zarr.storage.FsspecStore(fs, read_only=True, path="")


def test_json_references_open_as_the_source(server, datasets):
    base, store = references(server, "mixed")
    out = left_out(server, "mixed")
    with xr.open_dataset(datasets[1]["mixed"], engine="netcdf4") as expected, \
            xr.open_dataset(store, engine="zarr", consolidated=False, zarr_format=2) as actual:
        datasets_equal(actual, expected, out)
    r = server.get(f"{base.removeprefix(server.url)}/refs.parq/.zmetadata")
    assert r.status_code == 404 and "JSON" in r.json()["detail"]


def test_more_than_100000_chunks_export_parquet_references(cloudify, tmp_path, start_server):
    """102 400 one-value chunks, 6 400 never written: kerchunk's Parquet layout, read by
    fsspec's reference filesystem through the function, equals netCDF4's reading."""
    import subprocess

    import netCDF4
    import numpy as np

    path = str(tmp_path / "big.nc")
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("y", 320)
        nc.createDimension("x", 320)
        v = nc.createVariable("z", "i2", ("y", "x"), chunksizes=(1, 1), fill_value=-9)
        v[:300, :] = np.arange(300 * 320).reshape(300, 320) % 1000
    bucket = str(tmp_path / "bucket")
    r = subprocess.run([cloudify, "index", "--bucket", bucket, "--dataset", "big", path],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    server = start_server(bucket, "--publish-sources")
    base, store = references(server, "big")
    version = base.rsplit("/", 1)[1]
    files = sorted(os.listdir(os.path.join(bucket, "datasets", "big", version, "refs.parq", "z")))
    assert files == ["refs.0.parq", "refs.1.parq"]
    assert not os.path.exists(os.path.join(bucket, "datasets", "big", version, "refs.json"))
    with xr.open_dataset(path, engine="netcdf4") as expected, \
            xr.open_dataset(store, engine="zarr", consolidated=False, zarr_format=2) as actual:
        datasets_equal(actual, expected)
        assert np.isnan(actual["z"].values[300:]).all()
    r = server.get(f"/datasets/big/{version}/refs.json")
    assert r.status_code == 404 and "Parquet" in r.json()["detail"]
    for bad in ["refs.parq/z/refs.x.parq", "refs.parq/../index.json", "refs.parq/z/other"]:
        assert server.get(f"/datasets/big/{version}/{bad}").status_code in (400, 404), bad
    item = server.get("/datasets/big/stac").json()
    assert item["assets"]["references"]["href"].endswith(f"{version}/refs.parq")
    # Each reference costs a few bytes, far below the JSON's.
    size = sum(os.path.getsize(os.path.join(root, f)) for root, _, fs in
               os.walk(os.path.join(bucket, "datasets", "big", version, "refs.parq")) for f in fs)
    assert size < 102400 * 4, size
