"""`cloudify publish`: the whole index copied to a folder serves the same data as the bucket it
came from; the catalog alone is a relative published catalog that names nothing it did not
copy; a second publish with nothing changed writes nothing."""
import json
import os
import subprocess

import numpy as np
import pystac
import xarray as xr

import make_files
from compare import datasets_equal


def cli(cloudify, *args):
    out = subprocess.run([cloudify, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_whole_index_published_serves_the_same(cloudify, tmp_path, start_server):
    bucket, copy = str(tmp_path / "bucket"), str(tmp_path / "copy")
    source = make_files.model_piece(str(tmp_path / "src.nc"), np.arange(12.0))
    cli(cloudify, "index", "--bucket", bucket, "--dataset", "t", source)
    out = cli(cloudify, "publish", "--bucket", bucket, "--to", copy, "--all")
    assert "wrote index.json" in out and "0 deleted" in out, out
    server = start_server(copy)
    with xr.open_dataset(source, engine="netcdf4") as expected, \
            xr.open_dataset(server.url + "/datasets/t/zarr", engine="zarr",
                            consolidated=True) as actual:
        datasets_equal(actual.load(), expected.load())
    again = cli(cloudify, "publish", "--bucket", bucket, "--to", copy, "--all")
    assert ": 0 objects written, 0 deleted, " in again and "wrote" not in again, again
    # A dataset removed from the bucket is removed from the copy.
    cli(cloudify, "rm", "--bucket", bucket, "t")
    gone = cli(cloudify, "publish", "--bucket", bucket, "--to", copy, "--all")
    assert "deleted stac/datasets/t/t.json" in gone, gone
    assert json.load(open(os.path.join(copy, "index.json")))["datasets"] == {}


def test_the_catalog_alone_names_nothing_it_did_not_copy(cloudify, tmp_path):
    bucket, site = str(tmp_path / "bucket"), tmp_path / "site"
    source = make_files.model_piece(str(tmp_path / "src.nc"), np.arange(12.0))
    cli(cloudify, "index", "--bucket", bucket, "--dataset", "t", "--public-url",
        "https://fn.example.org", source)
    os.makedirs(site / ".git")
    (site / ".git" / "HEAD").write_text("ref: refs/heads/gh-pages\n")
    out = cli(cloudify, "publish", "--bucket", bucket, "--to", str(site), "--public-url",
              "https://example.org/site/")
    assert "index.json" not in out and "stac/config.json" not in out, out
    assert sorted(os.listdir(site)) == [".git", "stac"]
    root = json.loads((site / "stac" / "catalog.json").read_text())
    assert [(link["rel"], link["href"]) for link in root["links"] if link["rel"] == "self"] == \
        [("self", "https://example.org/site/stac/catalog.json")]
    item = json.loads((site / "stac" / "datasets" / "t" / "t.json").read_text())
    # The references live in a local bucket nobody else reads: left out, not left dangling.
    assert "references" not in item["assets"], item["assets"].keys()
    assert item["assets"]["zarr"]["href"] == "https://fn.example.org/datasets/t/zarr"
    catalog = pystac.Catalog.from_file(str(site / "stac" / "catalog.json"))
    assert [i.id for i in catalog.get_items(recursive=True)] == ["t"]
    assert (site / ".git" / "HEAD").exists()
    # A bucket no indexer wrote is named as such, and nothing is written.
    out = subprocess.run([cloudify, "publish", "--bucket", str(tmp_path / "typo"), "--to",
                          str(site)], capture_output=True, text=True)
    assert out.returncode != 0 and "no stac/catalog.json to publish" in out.stderr, out.stderr
    assert (site / "stac" / "catalog.json").exists()
