"""Run by the Python 3.12 venv with icechunk (.venv-ic): open each repository named on stdin
(JSON: [{"repo", "sources", "left_out"}], sources null: only read every value) at `main` with
icechunk and xarray, every virtual chunk container authorised, and compare it with its sources
read by netCDF4. A job {"item", "asset", ...} instead opens a STAC item's asset as its users do:
`xr.open_dataset(item.assets[asset])` through xpystac (S3 settings from the environment), a
folder's Icechunk repository at the asset's snapshot.
Prints one line per repository or item; exits 1 when one differs or fails to open."""
import json
import os
import sys
import traceback

import icechunk
import pystac
import xarray as xr

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from compare import datasets_equal, source  # noqa: E402


def open_main(repo):
    storage = icechunk.local_filesystem_storage(repo)
    config = icechunk.Repository.fetch_config(storage)
    access = {p: icechunk.credentials.LocalFileSystemAccess
              for p in config.virtual_chunk_containers}
    r = icechunk.Repository.open(storage, authorize_virtual_chunk_access=access)
    return r, r.readonly_session(branch="main")


def opened(job):
    if "item" in job:
        item = pystac.Item.from_file(job["item"])
        asset = item.assets[job["asset"]]
        if asset.media_type == "application/vnd.zarr+icechunk" and asset.href.startswith("file://"):
            # xpystac opens S3 repositories only: a folder's, as its users would, by hand.
            repo, _ = open_main(asset.href.removeprefix("file://"))
            session = repo.readonly_session(snapshot_id=asset.extra_fields["version"])
            return xr.open_zarr(session.store, zarr_format=3, consolidated=False)
        return xr.open_dataset(asset)
    _, session = open_main(job["repo"])
    return xr.open_zarr(session.store, zarr_format=3, consolidated=False)


def main():
    failed = 0
    for job in json.load(sys.stdin):
        try:
            with opened(job) as actual:
                if job["sources"] is None:
                    actual.load()
                else:
                    with source(job["sources"]) as expected:
                        datasets_equal(actual, expected.load(), job["left_out"])
            print(f"ok {job.get('repo') or job['item']}")
        except Exception:  # one line per repository, the traceback for the failed ones
            failed += 1
            print(f"FAILED {job.get('repo') or job['item']}\n{traceback.format_exc()}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
