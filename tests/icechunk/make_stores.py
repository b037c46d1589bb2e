"""Run by the Python 3.12 venv with icechunk (.venv-ic): the stores other tools make from a
NetCDF file, for `cloudify index` to read as sources.

    make_stores.py SOURCE OUT     the stores below, in the folder OUT
    make_stores.py --commit REPO  one more commit on REPO's main: its `tas` plus one
    make_stores.py --virtual-s3 SOURCE REPO
                                  VirtualiZarr's repository of the S3 object SOURCE, written to
                                  the S3 prefix REPO (both s3:// URLs; the endpoint, region and
                                  credentials from the environment, as the AWS SDKs read them)

In OUT: `native.icechunk` (xarray's to_zarr into an Icechunk session: native and inline
chunks), `virtual.icechunk` (VirtualiZarr's to_icechunk: virtual chunks into SOURCE, its
coordinates loaded, each reference checked by SOURCE's time), `v3.zarr` (xarray's to_zarr,
`tas` under gzip), `v2.zarr` (shuffle and zstd) and `v2-blosc.zarr` (zarr-python's default
v2 compressor). The native repository gets a second commit, its `tas` plus one, with the
first tagged `first`. Prints JSON: the snapshots made, oldest first."""
import datetime
import json
import os
import sys

import icechunk
import icechunk.credentials
import numcodecs
import xarray as xr
import zarr
from obspec_utils.registry import ObjectStoreRegistry
from obstore.store import LocalStore, S3Store
from virtualizarr import open_virtual_dataset
from virtualizarr.parsers import HDFParser


# `tas` in several chunks, none of them the source's.
CHUNKS = {"tas": {"chunks": (6, 2, 5)}}


def encoding(**tas):
    return {**CHUNKS, "tas": {**CHUNKS["tas"], **tas}}


def commit(repo, ds, message):
    session = repo.writable_session("main")
    ds.to_zarr(session.store, zarr_format=3, consolidated=False, mode="w", encoding=CHUNKS)
    return session.commit(message)


def native(ds, path):
    # Chunks over 100 bytes (tas's) in chunk objects, the coordinates' inline.
    config = icechunk.RepositoryConfig(inline_chunk_threshold_bytes=100)
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(path), config=config)
    snapshots = [commit(repo, ds, "tas"), commit(repo, ds.assign(tas=ds.tas + 1), "tas + 1")]
    repo.create_tag("first", snapshots[0])
    return snapshots


def one_more(path):
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(path))
    session = repo.readonly_session(branch="main")
    with xr.open_zarr(session.store, zarr_format=3, consolidated=False) as ds:
        return [commit(repo, ds.load().assign(tas=ds.tas + 1), "tas + 1 again")]


def virtual(source, path):
    url = "file://" + source
    prefix = url.rsplit("/", 1)[0] + "/"
    registry = ObjectStoreRegistry({"file://": LocalStore()})
    vds = open_virtual_dataset(url, registry=registry, parser=HDFParser())
    config = icechunk.RepositoryConfig.default()
    config.set_virtual_chunk_container(
        icechunk.VirtualChunkContainer(prefix, icechunk.local_filesystem_store(prefix)))
    repo = icechunk.Repository.create(
        icechunk.local_filesystem_storage(path), config=config,
        authorize_virtual_chunk_access={prefix: icechunk.credentials.LocalFileSystemAccess})
    session = repo.writable_session("main")
    # Referenced as of now (rounded up): a source modified later is refused.
    now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)
    vds.vz.to_icechunk(session.store, last_updated_at=now)
    return [session.commit("virtual")]


def virtual_s3(source, repo_url):
    bucket, key = source.removeprefix("s3://").split("/", 1)
    prefix = source.rsplit("/", 1)[0] + "/"
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    local = bool(endpoint) and endpoint.startswith("http://")
    store = S3Store(bucket, region=os.environ["AWS_REGION"], endpoint=endpoint,
                    client_options={"allow_http": local})
    registry = ObjectStoreRegistry({f"s3://{bucket}": store})
    vds = open_virtual_dataset(source, registry=registry, parser=HDFParser())
    config = icechunk.RepositoryConfig.default()
    config.set_virtual_chunk_container(icechunk.VirtualChunkContainer(
        prefix, icechunk.s3_store(region=os.environ["AWS_REGION"], endpoint_url=endpoint,
                                  allow_http=local, force_path_style=bool(endpoint))))
    repo_bucket, repo_prefix = repo_url.removeprefix("s3://").split("/", 1)
    storage = icechunk.s3_storage(bucket=repo_bucket, prefix=repo_prefix, from_env=True,
                                  endpoint_url=endpoint, allow_http=local,
                                  force_path_style=bool(endpoint))
    repo = icechunk.Repository.create(
        storage, config=config,
        authorize_virtual_chunk_access=icechunk.containers_credentials(
            {prefix: icechunk.s3_credentials(from_env=True)}))
    session = repo.writable_session("main")
    # S3 records each reference's ETag.
    vds.vz.to_icechunk(session.store)
    return [session.commit("virtual, of an S3 object")]


def main():
    if sys.argv[1] == "--commit":
        print(json.dumps(one_more(sys.argv[2])))
        return
    if sys.argv[1] == "--virtual-s3":
        print(json.dumps(virtual_s3(sys.argv[2], sys.argv[3])))
        return
    source, out = os.path.abspath(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    with xr.open_dataset(source) as ds:
        ds = ds.load()
        made = {
            "native": native(ds, os.path.join(out, "native.icechunk")),
            "virtual": virtual(source, os.path.join(out, "virtual.icechunk")),
        }
        gzip = encoding(compressors=[zarr.codecs.GzipCodec(level=1)])
        ds.to_zarr(os.path.join(out, "v3.zarr"), zarr_format=3, mode="w", encoding=gzip)
        zstd = {name: {"compressors": numcodecs.Zstd(level=1),
                       "filters": [numcodecs.Shuffle(elementsize=v.dtype.itemsize)]}
                for name, v in ds.variables.items()}
        zstd["tas"].update(CHUNKS["tas"])
        ds.to_zarr(os.path.join(out, "v2.zarr"), zarr_format=2, mode="w", encoding=zstd)
        ds.to_zarr(os.path.join(out, "v2-blosc.zarr"), zarr_format=2, mode="w",
                   encoding=CHUNKS)
    print(json.dumps(made))


if __name__ == "__main__":
    main()
