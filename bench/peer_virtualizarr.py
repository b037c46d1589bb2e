"""The peer of cloudify's virtual Icechunk repositories: VirtualiZarr's HDF parser and
`to_icechunk`, run by the Python 3.12 venv (.venv-ic) for bench/bench_icechunk.py.

    peer_virtualizarr.py REPO [--concat-dim DIM] FILE...

Writes a virtual Icechunk repository of FILE(s) (concatenated along DIM) in the folder REPO,
a container per source folder, one commit; prints the time of each step on stderr."""
import argparse
import os
import shutil
import sys
import time

import icechunk
import icechunk.credentials
import xarray as xr
from obspec_utils.registry import ObjectStoreRegistry
from obstore.store import LocalStore
from virtualizarr import open_virtual_dataset
from virtualizarr.parsers import HDFParser


def main():
    p = argparse.ArgumentParser()
    p.add_argument("repo")
    p.add_argument("--concat-dim")
    p.add_argument("files", nargs="+")
    args = p.parse_args()
    urls = ["file://" + os.path.abspath(f) for f in args.files]
    registry = ObjectStoreRegistry({"file://": LocalStore()})
    t0 = time.perf_counter()
    parts = [open_virtual_dataset(u, registry=registry, parser=HDFParser()) for u in urls]
    vds = parts[0] if len(parts) == 1 else xr.concat(
        parts, dim=args.concat_dim, coords="minimal", compat="override", data_vars="minimal")
    t1 = time.perf_counter()
    prefixes = sorted({u.rsplit("/", 1)[0] + "/" for u in urls})
    config = icechunk.RepositoryConfig.default()
    for prefix in prefixes:
        config.set_virtual_chunk_container(
            icechunk.VirtualChunkContainer(prefix, icechunk.local_filesystem_store(prefix)))
    shutil.rmtree(args.repo, ignore_errors=True)
    repo = icechunk.Repository.create(
        icechunk.local_filesystem_storage(args.repo), config=config,
        authorize_virtual_chunk_access={p: icechunk.credentials.LocalFileSystemAccess
                                        for p in prefixes})
    session = repo.writable_session("main")
    vds.vz.to_icechunk(session.store)
    t2 = time.perf_counter()
    session.commit(f"{len(urls)} sources")
    t3 = time.perf_counter()
    print(f"open {t1 - t0:.2f} s, to_icechunk {t2 - t1:.2f} s, commit {t3 - t2:.2f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
