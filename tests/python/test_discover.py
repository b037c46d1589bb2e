"""`[[discover]]` in cloudify.toml: every Icechunk repository and Zarr store under a folder
that holds them among other objects becomes a dataset, CMIP6-style files there are grouped into
datasets by their names and concatenated along time, and a dataset whose files or store are
gone leaves index.json and the catalog on the next run."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr

import make_files
from compare import datasets_equal
from servers import make_stores

CMIP6 = "cmip6/{variable}_{table}_{model}_{experiment}_{member}_{grid}_{period}.nc"
TAS = "tas_Amon_M1_historical_r1i1p1f1_gn"


def run(cloudify, bucket, config, ok=True):
    out = subprocess.run([cloudify, "index", "--bucket", bucket, "--config", config],
                         capture_output=True, text=True)
    assert (out.returncode == 0) == ok, out.stdout + out.stderr
    return out.stdout + out.stderr


def registry(bucket):
    return json.load(open(os.path.join(bucket, "index.json")))["datasets"]


def items(bucket):
    stac = os.path.join(bucket, "stac", "datasets")
    return sorted(d for d in os.listdir(stac) if os.path.isdir(os.path.join(stac, d)))


@pytest.fixture
def archive(tmp_path):
    """A folder of stores, CMIP6-style files and other objects, and a config discovering it."""
    root = tmp_path / "archive"
    stores = tmp_path / "made"
    source = make_files.model_piece(str(tmp_path / "src.nc"), np.arange(24.0), chunks=(6, 4, 5))
    make_stores(source, str(stores))
    for name in ("native.icechunk", "v3.zarr", "v2.zarr"):
        shutil.copytree(stores / name, root / "stores" / name)
    (root / "cmip6").mkdir(parents=True)
    for period, times in (("185001-185012", np.arange(0.0, 12)),
                          ("185101-185112", np.arange(12.0, 24))):
        make_files.model_piece(str(root / "cmip6" / f"{TAS}_{period}.nc"), times)
    make_files.model_piece(str(root / "cmip6" / "pr_Amon_M1_historical_r1i1p1f1_gn_1850.nc"),
                           np.arange(0.0, 12), seed=1)
    (root / "cmip6" / "README.txt").write_text("not a dataset\n")
    (root / "notes.nc.txt").write_text("nor this\n")
    config = tmp_path / "cloudify.toml"
    config.write_text(f'[[discover]]\nunder = "archive"\nfiles = "{CMIP6}"\n')
    return root, str(config), source


def test_stores_and_grouped_files_are_found_served_and_forgotten(cloudify, archive, tmp_path,
                                                                 start_server):
    root, config, source = archive
    bucket = str(tmp_path / "bucket")
    run(cloudify, bucket, config)
    found = registry(bucket)
    pr = "pr_Amon_M1_historical_r1i1p1f1_gn"
    assert sorted(found) == sorted(["native", "v3", "v2", TAS, pr]), found
    assert items(bucket) == sorted(found)
    server = start_server(bucket, "--index-ttl", "0")
    with xr.open_dataset(source, engine="netcdf4") as ds:
        expected = ds.load()
    with xr.open_dataset(server.url + "/datasets/v3/zarr3", engine="zarr", zarr_format=3,
                         consolidated=True) as actual:
        datasets_equal(actual.load(), expected)
    # The two files of one name, one dataset along time.
    paths = sorted(str(p) for p in (root / "cmip6").glob(f"{TAS}_*.nc"))
    parts = [xr.open_dataset(p, engine="netcdf4").load() for p in paths]
    expected = xr.concat(parts, dim="time", data_vars="minimal", coords="minimal",
                         compat="override")
    with xr.open_dataset(server.url + f"/datasets/{TAS}/zarr", engine="zarr", zarr_format=2,
                         consolidated=True) as actual:
        assert actual.sizes["time"] == 24
        datasets_equal(actual.load(), expected)

    # Nothing changed: nothing written.
    again = run(cloudify, bucket, config)
    assert "no longer under" not in again and registry(bucket) == found, again

    # A store and a file group go: their datasets leave index.json and the catalog; their
    # objects stay until cloudify gc.
    shutil.rmtree(root / "stores" / "v2.zarr")
    os.remove(root / "cmip6" / f"{pr}_1850.nc")
    gone = run(cloudify, bucket, config)
    assert "dataset v2: no longer under archive" in gone, gone
    assert f"dataset {pr}: no longer under archive" in gone, gone
    assert sorted(registry(bucket)) == sorted(["native", "v3", TAS])
    assert items(bucket) == sorted(["native", "v3", TAS])
    assert server.get("/datasets/v2/zarr/.zmetadata").status_code == 404
    assert os.listdir(os.path.join(bucket, "datasets", "v2"))


def test_discovery_errors_name_the_rule_and_keep_the_last_datasets(cloudify, archive, tmp_path):
    root, config, _ = archive
    bucket = str(tmp_path / "bucket")
    run(cloudify, bucket, config)
    before = registry(bucket)
    # Two stores that would get one id.
    shutil.copytree(root / "stores" / "v3.zarr", root / "other" / "v3.zarr")
    err = run(cloudify, bucket, config, ok=False)
    assert 'discover archive: error' in err and 'both "v3"' in err, err
    assert registry(bucket) == before
    shutil.rmtree(root / "other")
    with open(config, "a") as f:
        f.write('\n[[discover]]\nunder = "nowhere"\n')
    err = run(cloudify, bucket, config, ok=False)
    assert "discover nowhere: error" in err and "cannot open" in err, err
    assert registry(bucket) == before
    bad = tmp_path / "bad.toml"
    bad.write_text('[[discover]]\nunder = "archive"\nfiles = "{variable"\n')
    err = run(cloudify, bucket, str(bad), ok=False)
    assert "is never closed" in err, err
