"""Stores in S3 (moto's server stands in): an Icechunk repository and Zarr stores under an
`s3://` prefix indexed as sources into an S3 bucket and served equal to the file they were made
from; the STAC items of Icechunk-backed datasets (that repository, and the virtual one the
indexer writes into the bucket) open through xpystac, as their users open them."""
import json
import os
import subprocess

import numpy as np
import pytest
import xarray as xr

import make_files
from aws import s3_env
from compare import datasets_equal
from servers import ROOT, Server, make_stores

READER = os.path.join(ROOT, "tests", "icechunk", "read_repos.py")
PYTHON = os.path.join(ROOT, ".venv-ic", "bin", "python")
# A bucket of their own: the sources under stores/ and files/, the index under INDEX/.
BUCKET, INDEX = "cloudify-stores", "idx"


def upload(s3, folder, prefix):
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            s3.upload_file(path, BUCKET, f"{prefix}/{os.path.relpath(path, folder)}")


def index(cloudify, env, ds_id, *args):
    r = subprocess.run([cloudify, "index", "--bucket", f"s3://{BUCKET}/{INDEX}", "--dataset",
                        ds_id, *args], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def indexed(cloudify, moto, s3, tmp_path_factory):
    """A NetCDF file in S3 and the stores made from it, each indexed as a dataset into an S3
    bucket; `cloudify serve` on that bucket."""
    s3.create_bucket(Bucket=BUCKET)
    here = tmp_path_factory.mktemp("stores")
    source = make_files.model_piece(str(here / "src.nc"), np.arange(24.0), chunks=(6, 4, 5))
    make_stores(source, str(here / "stores"))
    upload(s3, str(here / "stores"), "stores")
    s3.upload_file(source, BUCKET, "files/src.nc")
    env = s3_env(moto.url)
    make_stores("--virtual-s3", f"s3://{BUCKET}/files/src.nc", f"s3://{BUCKET}/stores/vz.icechunk",
                env=env)
    index(cloudify, env, "ice", f"s3://{BUCKET}/stores/native.icechunk", "--ref", "first")
    index(cloudify, env, "vz", f"s3://{BUCKET}/stores/vz.icechunk")
    index(cloudify, env, "v3", f"s3://{BUCKET}/stores/v3.zarr/")
    index(cloudify, env, "v2", f"s3://{BUCKET}/stores/v2.zarr")
    index(cloudify, env, "file", f"s3://{BUCKET}/files/src.nc")
    index(cloudify, env, "ice-cat", f"s3://{BUCKET}/stores/native.icechunk", "--ref", "first",
          "--catalog-only")
    index(cloudify, env, "v3-cat", f"s3://{BUCKET}/stores/v3.zarr/", "--catalog-only")
    # Sources outside the index prefix are named by URL, the repository among them.
    server = Server(cloudify, f"s3://{BUCKET}/{INDEX}", "--error-detail", "internal",
                    "--publish-sources", env=env)
    yield server, source, env
    server.stop()


@pytest.mark.parametrize("ds_id", ["ice", "vz", "v3", "v2"])
def test_stores_in_s3_are_served_equal_to_their_file(indexed, ds_id):
    server, source, _ = indexed
    with xr.open_dataset(source, engine="netcdf4") as expected:
        for route, zarr_format in [("zarr", 2), ("zarr3", 3), ("kerchunk", 2)]:
            with xr.open_dataset(f"{server.url}/datasets/{ds_id}/{route}", engine="zarr",
                                 zarr_format=zarr_format, consolidated=True) as actual:
                datasets_equal(actual, expected.load())


def test_icechunk_items_open_through_xpystac(indexed):
    """The repositories indexed as sources (a native one at its first snapshot, VirtualiZarr's
    of the S3 file) and the virtual one the indexer wrote for the file: each item's `icechunk`
    asset, beside the function's."""
    server, source, env = indexed
    items = {ds_id: server.get(f"/datasets/{ds_id}/stac").json()
             for ds_id in ("ice", "vz", "file")}
    for ds_id, item in items.items():
        asset = item["assets"]["icechunk"]
        assert asset["type"] == "application/vnd.zarr+icechunk", asset
        assert {"zarr", "zarr3"} <= set(item["assets"]), item["assets"].keys()
        assert item["storage:schemes"] == item["properties"]["storage:schemes"]
        assert asset["storage:refs"] == [f"aws-s3-{BUCKET}"]
    ice, virtual = items["ice"]["assets"]["icechunk"], items["file"]["assets"]["icechunk"]
    assert ice["href"] == f"s3://{BUCKET}/stores/native.icechunk/"
    assert ice["version"] == ice["icechunk:snapshot_id"] == tagged(env, "first"), ice
    assert "virtual" not in ice["roles"]
    assert virtual["href"] == f"s3://{BUCKET}/{INDEX}/icechunk/file/", virtual
    assert "virtual" in virtual["roles"] and virtual["vrt:hrefs"][0]["key"] == "virtual-0"
    assert items["file"]["assets"]["virtual-0"]["href"] == f"s3://{BUCKET}/files/"
    made = items["vz"]["assets"]["icechunk"]
    assert made["href"] == f"s3://{BUCKET}/stores/vz.icechunk/", made
    assert "virtual" in made["roles"] and made["vrt:hrefs"][0]["key"] == "virtual-0", made
    assert items["vz"]["assets"]["virtual-0"]["href"] == f"s3://{BUCKET}/files/"
    jobs = [{"item": f"{server.url}/datasets/{ds_id}/stac", "asset": "icechunk",
             "sources": source, "left_out": []} for ds_id in items]
    out = subprocess.run([PYTHON, READER], input=json.dumps(jobs), capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert out.stdout.count("ok ") == 3, out.stdout


def tagged(env, tag):
    """The snapshot `tag` names in the repository in S3, as icechunk reads it."""
    code = ("import icechunk, sys; r = icechunk.Repository.open(icechunk.s3_storage(bucket=sys."
            "argv[1], prefix='stores/native.icechunk', from_env=True)); "
            "print(r.lookup_tag(sys.argv[2]))")
    out = subprocess.run([PYTHON, "-c", code, BUCKET, tag], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_catalogued_only_stores_in_s3_name_themselves(indexed):
    """`--catalog-only`: the items of a repository and a Zarr store in S3 name them with their
    storage scheme and nothing of the function's; the repository's opens through xpystac at the
    snapshot indexed, and the function serves neither."""
    server, source, env = indexed
    assert not {"ice-cat", "v3-cat"} & set(server.get("/datasets").json())
    assert server.get("/datasets/v3-cat/zarr3/zarr.json").status_code == 404
    scheme = {"type": "aws-s3", "platform": f"https://{BUCKET}.s3.us-east-1.amazonaws.com",
              "bucket": BUCKET, "region": "us-east-1"}
    items = {i: server.get(f"/datasets/{i}/stac").json() for i in ("ice-cat", "v3-cat")}
    for item in items.values():
        assert not {"zarr", "zarr3", "references"} & set(item["assets"]), item["assets"]
        assert item["storage:schemes"] == {f"aws-s3-{BUCKET}": scheme}, item
    store = items["v3-cat"]["assets"]["source"]
    assert store["href"] == f"s3://{BUCKET}/stores/v3.zarr", store
    assert store["storage:refs"] == [f"aws-s3-{BUCKET}"] and store["zarr:zarr_format"] == 3
    repo = items["ice-cat"]["assets"]["icechunk"]
    assert repo["href"] == f"s3://{BUCKET}/stores/native.icechunk/"
    assert repo["version"] == tagged(env, "first"), repo
    jobs = [{"item": f"{server.url}/datasets/ice-cat/stac", "asset": "icechunk",
             "sources": source, "left_out": []}]
    out = subprocess.run([PYTHON, READER], input=json.dumps(jobs), capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode == 0 and out.stdout.startswith("ok "), out.stdout[-4000:] + out.stderr


def test_discovery_lists_an_http_prefix_that_answers_s3_listings(indexed, moto, s3, cloudify,
                                                                 tmp_path):
    """`[[discover]]` under an `http://` prefix of an S3-compatible server (path style, its
    objects public, read anonymously): its Zarr store and its CMIP6-style files, found by ListObjectsV2 over HTTP,
    indexed by URL and served equal to their sources; a prefix that answers no listing is an
    error naming it."""
    _, source, env = indexed
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="stores/v3.zarr/")["Contents"]
    for o in listed:
        s3.copy_object(Bucket=BUCKET, Key="listed/" + o["Key"].removeprefix("stores/"),
                       CopySource={"Bucket": BUCKET, "Key": o["Key"]}, ACL="public-read")
    tas = "tas_Amon_M1_historical_r1i1p1f1_gn"
    parts = []
    for period, times in (("185001-185012", np.arange(0.0, 12)),
                          ("185101-185112", np.arange(12.0, 24))):
        path = make_files.model_piece(str(tmp_path / f"{tas}_{period}.nc"), times)
        s3.upload_file(path, BUCKET, f"listed/cmip6/{tas}_{period}.nc",
                       ExtraArgs={"ACL": "public-read"})
        parts.append(path)
    config = tmp_path / "cloudify.toml"
    config.write_text(f'[[discover]]\nunder = "{moto.url}/{BUCKET}/listed/"\n'
                      'files = "cmip6/{variable}_{table}_{model}_{experiment}_{member}_{grid}_'
                      '{period}.nc"\n')
    bucket = str(tmp_path / "bucket")
    out = subprocess.run([cloudify, "index", "--bucket", bucket, "--config", str(config)],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    registry = json.load(open(os.path.join(bucket, "index.json")))["datasets"]
    assert sorted(registry) == sorted(["v3", tas]), registry
    server = Server(cloudify, bucket, "--publish-sources", env=env)
    try:
        info = server.get(f"/datasets/{tas}/info").json()
        # The files by URL (beside the values the index assembled, in the bucket).
        assert [s["url"] for s in info["sources"] if s["url"].endswith(".nc")] == \
            [f"{moto.url}/{BUCKET}/listed/cmip6/{tas}_{p}.nc" for p in ("185001-185012", "185101-185112")]
        with xr.open_dataset(source, engine="netcdf4") as expected, \
                xr.open_dataset(f"{server.url}/datasets/v3/zarr3", engine="zarr", zarr_format=3,
                                consolidated=True) as actual:
            datasets_equal(actual, expected.load())
        expected = xr.concat([xr.open_dataset(p, engine="netcdf4").load() for p in parts],
                             dim="time", data_vars="minimal", coords="minimal", compat="override")
        with xr.open_dataset(f"{server.url}/datasets/{tas}/zarr", engine="zarr", zarr_format=2,
                             consolidated=True) as actual:
            datasets_equal(actual, expected)
    finally:
        server.stop()
    # A prefix nothing lists (no such bucket): an error naming it.
    config.write_text(f'[[discover]]\nunder = "{moto.url}/no-such-bucket/x/"\n')
    out = subprocess.run([cloudify, "index", "--bucket", bucket, "--config", str(config)],
                         capture_output=True, text=True, env=env)
    said = out.stdout + out.stderr
    assert f"{moto.url}/no-such-bucket/x/: cannot be listed" in said, said
