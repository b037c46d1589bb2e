"""Multi-file datasets (`--concat-dim`): served through `/kerchunk`, `/zarr` and `/zarr3` exactly
as `xr.open_mfdataset` reads the same files, and every disagreement between files reported
naming the file."""
import glob
import os
import subprocess

import netCDF4
import numpy as np
import pytest
import xarray as xr

from compare import datasets_equal
from make_files import model_piece as write
from servers import sample_files

VIEWS = {"kerchunk": 2, "zarr": 2, "zarr3": 3}


def cmip(model, table):
    """esmvaltool-sample-data's files of one EC-Earth model and table, sorted."""
    return sorted(p for p in sample_files()
                  if f"/{model}/" in p and f"/{table}/" in p and "/ta/" in p)


def index(cloudify, bucket, ds_id, paths, *options):
    return subprocess.run([cloudify, "index", "--bucket", bucket, "--dataset", ds_id,
                           "--concat-dim", "time", *options, *paths],
                          capture_output=True, text=True)


def mfdataset(paths):
    return xr.open_mfdataset(paths, engine="netcdf4", combine="by_coords", data_vars="minimal",
                             coords="minimal", compat="override").load()


def assert_served_as_mfdataset(server, ds_id, paths, views=VIEWS):
    info = server.get(f"/datasets/{ds_id}/info").json()
    expected = mfdataset(paths)
    for view in views:
        out = set(info["skipped"]) | set(info["routes"][view]["excluded"])
        with xr.open_dataset(f"{server.url}/datasets/{ds_id}/{view}", engine="zarr",
                             zarr_format=VIEWS[view], consolidated=True) as actual:
            datasets_equal(actual, expected, out)
    return info


@pytest.mark.parametrize("model,table,steps", [
    ("EC-Earth3", "Amon", 780),          # 65 yearly files of 12 months, contiguous
    ("EC-Earth3-Veg", "day", 1096),      # 366 + 365 + 365 days, contiguous: cut into rows
    ("EC-Earth3-AerChem", "day", 1096),
])
def test_cmip6_files_concatenate_as_open_mfdataset(cloudify, tmp_path, start_server, model,
                                                   table, steps):
    paths = cmip(model, table)
    assert len(paths) >= 3
    bucket = str(tmp_path / "bucket")
    # Given in reverse: the order comes from the time coordinate.
    r = index(cloudify, bucket, "run", paths[::-1])
    assert r.returncode == 0, r.stderr
    server = start_server(bucket)
    info = assert_served_as_mfdataset(server, "run", paths)
    assert info["variables"]["ta"]["shape"][0] == steps
    assert [s["url"] for s in info["sources"]] == [f"file://{p}" for p in paths]


def test_files_of_different_lengths_and_formats_and_a_glob(cloudify, tmp_path, start_server):
    """120, 120 and 60 steps, chunked by one step; and the same as NetCDF-3 record files."""
    lengths = [120, 120, 60]
    starts = np.cumsum([0] + lengths[:-1])
    for fmt, tag in [("NETCDF4", "nc4"), ("NETCDF3_64BIT_OFFSET", "nc3")]:
        paths = [write(str(tmp_path / f"{tag}_{i}.nc"), np.arange(n) + s0, fmt=fmt, seed=i)
                 for i, (n, s0) in enumerate(zip(lengths, starts))]
        bucket = str(tmp_path / f"bucket_{tag}")
        r = index(cloudify, bucket, tag, [str(tmp_path / f"{tag}_*.nc")])
        assert r.returncode == 0, r.stderr
        server = start_server(bucket)
        info = assert_served_as_mfdataset(server, tag, paths)
        assert info["variables"]["tas"]["shape"] == [300, 4, 5]
        # Served chunks are assembled across the file boundaries.
        grid = server.get(f"/datasets/{tag}/zarr/tas/.zarray").json()
        assert grid["shape"] == [300, 4, 5]


def test_time_units_that_differ_are_converted_to_the_first_files(cloudify, tmp_path,
                                                                  start_server):
    a = write(str(tmp_path / "a.nc"), np.arange(10.0), seed=1)
    # The second file counts hours from day 10: the same calendar, other units.
    b = write(str(tmp_path / "b.nc"), np.arange(10) * 24.0 + 12, seed=2,
              units="hours since 2000-01-11 00:00:00")
    with netCDF4.Dataset(b, "a") as nc:  # its bounds in its own units too
        nc["time_bnds"][:] = np.stack([np.arange(10) * 24.0, np.arange(10) * 24.0 + 24], axis=1)
    bucket = str(tmp_path / "bucket")
    r = index(cloudify, bucket, "units", [a, b])
    assert r.returncode == 0, r.stderr
    server = start_server(bucket)
    assert_served_as_mfdataset(server, "units", [a, b])
    with xr.open_dataset(f"{server.url}/datasets/units/zarr", engine="zarr",
                         decode_times=False) as raw:
        assert raw["time"].attrs["units"] == "days since 2000-01-01"
        np.testing.assert_array_equal(raw["time"].values[10:], np.arange(10) + 10.5)
        np.testing.assert_array_equal(raw["time_bnds"].values[10:, 0], np.arange(10) + 10.0)
    # The converted values live in the bucket, named as a source.
    info = server.get("/datasets/units/info").json()
    assert info["sources"][-1]["url"].startswith("datasets/units/values/")


def test_a_rerun_without_a_file_drops_it(cloudify, tmp_path, start_server):
    paths = [write(str(tmp_path / f"p{i}.nc"), np.arange(5) + 5 * i, seed=i) for i in range(3)]
    bucket = str(tmp_path / "bucket")
    assert index(cloudify, bucket, "run", paths).returncode == 0
    assert index(cloudify, bucket, "run", paths[:2]).returncode == 0
    server = start_server(bucket)
    info = assert_served_as_mfdataset(server, "run", paths[:2], views=["zarr"])
    # The two files, and the time values stored whole (their 512-step chunks do not line up).
    files = [s["url"] for s in info["sources"] if s["url"].startswith("file://")]
    assert files == [f"file://{p}" for p in paths[:2]]


@pytest.mark.parametrize("case,fault", [
    ("packing", '"tas": scale_factor 0.02, not 0.01'),
    ("lat", '"lat": its values differ'),
    ("missing", '"time_bnds": is missing'),
    ("units", '"lat"'),
    ("irregular", "irregular chunk boundaries"),
    ("repeat", "starts at the same value"),
])
def test_disagreeing_files_are_named(cloudify, tmp_path, case, fault):
    first = write(str(tmp_path / "first.nc"), np.arange(10.0), scale=0.01, chunks=(5, 4, 5))
    t = np.arange(10.0) + 10
    other = str(tmp_path / "other.nc")
    if case == "packing":
        write(other, t, scale=0.02, chunks=(5, 4, 5))
    elif case == "lat":
        write(other, t, scale=0.01, chunks=(5, 4, 5), lat=[-40, -15, 15, 40])
    elif case == "missing":
        write(other, t, scale=0.01, chunks=(5, 4, 5), with_bounds=False)
    elif case == "units":
        write(other, t, scale=0.01, chunks=(5, 4, 5))
        with netCDF4.Dataset(other, "a") as nc:
            nc["lat"].units = "degrees_south"
    elif case == "irregular":
        first = write(str(tmp_path / "first.nc"), np.arange(7.0), scale=0.01, chunks=(5, 4, 5))
        write(other, t, scale=0.01, chunks=(5, 4, 5))
    else:
        write(other, np.arange(10.0), scale=0.01, chunks=(5, 4, 5))
    bucket = str(tmp_path / "bucket")
    r = index(cloudify, bucket, "bad", [first, other])
    assert r.returncode != 0
    assert "first.nc" in r.stderr or "other.nc" in r.stderr, r.stderr
    assert fault in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(bucket, "index.json"))


def test_several_sources_need_a_concat_dim(cloudify, tmp_path):
    paths = [write(str(tmp_path / f"p{i}.nc"), np.arange(5) + 5 * i) for i in range(2)]
    r = subprocess.run([cloudify, "index", "--bucket", str(tmp_path / "b"), "--dataset", "x",
                        *paths], capture_output=True, text=True)
    assert r.returncode != 0 and "--concat-dim" in r.stderr
    r = index(cloudify, str(tmp_path / "b"), "x", [str(tmp_path / "nothing_*.nc")])
    assert r.returncode != 0 and "no file matches" in r.stderr
    assert glob.glob(str(tmp_path / "b" / "*")) == []
