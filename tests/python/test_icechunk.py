"""The virtual Icechunk repository `cloudify index` writes beside the index, read by icechunk
and xarray in their own Python 3.12 venv (.venv-ic, which scripts/test makes), equals the
sources netCDF4 reads; a source edited after indexing is refused, not read."""
import json
import os
import shutil
import subprocess

import h5py
import numpy as np

import make_files
from servers import ROOT, index

READER = os.path.join(ROOT, "tests", "icechunk", "read_repos.py")
PYTHON = os.path.join(ROOT, ".venv-ic", "bin", "python")


def read(jobs):
    assert os.path.exists(PYTHON), "no .venv-ic: scripts/test py makes it"
    return subprocess.run([PYTHON, READER], input=json.dumps(jobs), capture_output=True,
                          text=True, timeout=1800)


def failures(out):
    """What the reader said of the repositories that failed."""
    at = out.stdout.find("FAILED")
    return out.stdout[at:at + 6000] if at >= 0 else out.stdout[-2000:] + out.stderr[-2000:]


def left_out(server, ds_id):
    info = server.get(f"/datasets/{ds_id}/info").json()
    return sorted(set(info["skipped"]) | set(info["routes"]["icechunk"]["excluded"]))


def histories(repos):
    """Each repository's tags and the messages of main's commits, newest first, read by one
    Python (icechunk's import takes most of a second); no branch but main."""
    code = ("import json, sys, icechunk\n"
            "for path in sys.argv[1:]:\n"
            "    r = icechunk.Repository.open(icechunk.local_filesystem_storage(path))\n"
            "    print(json.dumps([sorted(r.list_tags()), [s.message for s in "
            "r.ancestry(branch='main')], sorted(r.list_branches())]))\n")
    out = subprocess.run([PYTHON, "-c", code, *repos], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    found = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(found) == len(repos), out.stdout[-2000:]
    for tags, messages, branches in found:
        assert branches == ["main"], branches
    return [(tags, messages) for tags, messages, _ in found]


def history(repo):
    """The repository's tags and the messages of main's commits, newest first."""
    return histories([repo])[0]


def test_every_dataset_opens_through_icechunk_with_the_sources_values(datasets, server):
    bucket, sources = datasets
    jobs = [{"repo": os.path.join(bucket, "icechunk", ds_id), "sources": path,
             "left_out": left_out(server, ds_id)} for ds_id, path in sources.items()]
    out = read(jobs)
    assert out.returncode == 0, failures(out)
    assert out.stdout.count("ok ") == len(jobs), out.stdout[-2000:]
    # The one commit names the dataset's files (in the bucket here), not what the index stored.
    found = histories([os.path.join(bucket, "icechunk", ds_id) for ds_id in sources])
    for (ds_id, paths), (_, messages) in zip(sources.items(), found):
        files = [paths] if isinstance(paths, str) else paths
        assert messages[0].endswith(": added " + ", ".join(
            sorted(os.path.basename(p) for p in files))), (ds_id, messages)


def test_a_multi_file_dataset_is_one_array_per_variable(cloudify, tmp_path, start_server):
    """One array per variable over the files; a file added is a commit naming it; a variable
    whose chunks do not line up across the files is left out and named in `/info`."""
    bucket = str(tmp_path / "bucket")
    pieces = [make_files.model_piece(str(tmp_path / f"piece{i}.nc"), np.arange(n) + start, seed=i)
              for i, (n, start) in enumerate([(40, 0), (40, 40), (25, 80)])]
    index(cloudify, bucket, "pieces", *pieces[:2], "--concat-dim", "time")
    index(cloudify, bucket, "pieces", *pieces, "--concat-dim", "time")
    uneven = [make_files.model_piece(str(tmp_path / f"uneven{i}.nc"), np.arange(n) + start,
                                     seed=i, chunks=(c, 4, 5))
              for i, (n, c, start) in enumerate([(31, 10, 0), (28, 7, 31), (31, 31, 59)])]
    index(cloudify, bucket, "uneven", *uneven, "--concat-dim", "time")
    server = start_server(bucket)
    excluded = server.get("/datasets/uneven/info").json()["routes"]["icechunk"]["excluded"]
    assert "do not line up" in excluded["tas"], excluded
    out = read([{"repo": os.path.join(bucket, "icechunk", ds_id), "sources": paths,
                 "left_out": left_out(server, ds_id)}
                for ds_id, paths in [("pieces", pieces), ("uneven", uneven)]])
    assert out.returncode == 0, failures(out)
    messages = history(os.path.join(bucket, "icechunk", "pieces"))[1]
    assert messages[0].endswith(": added piece2.nc"), messages
    assert messages[1].endswith(": added piece0.nc, piece1.nc"), messages


def test_a_source_edited_after_indexing_is_refused(cloudify, generated, tmp_path):
    bucket = str(tmp_path / "bucket")
    path = str(tmp_path / "mixed.nc")
    shutil.copyfile(generated["mixed"], path)
    index(cloudify, bucket, "mixed", path)
    job = [{"repo": os.path.join(bucket, "icechunk", "mixed"), "sources": None, "left_out": []}]
    assert read(job).returncode == 0
    # The same size, one byte of a chunk changed, two seconds later.
    with h5py.File(path, "r") as h5:
        at = h5["zlib_shuffle"].id.get_chunk_info(0).byte_offset + 10
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))
    st = os.stat(path)
    os.utime(path, (st.st_atime, st.st_mtime + 2))
    out = read(job)
    assert out.returncode == 1 and "checksum" in out.stdout, out.stdout[-3000:]


def test_a_rerun_commits_nothing_and_a_new_version_is_tagged(cloudify, generated, tmp_path):
    bucket = str(tmp_path / "bucket")
    path = str(tmp_path / "mixed.nc")
    shutil.copyfile(generated["mixed"], path)
    index(cloudify, bucket, "mixed", path)
    index(cloudify, bucket, "mixed", path)
    repo = os.path.join(bucket, "icechunk", "mixed")
    tags, messages = history(repo)
    version = json.load(open(os.path.join(bucket, "index.json")))["datasets"]["mixed"]["version"]
    assert tags == [version] and messages[0] == f"cloudify {version}: added mixed.nc", messages
    assert len(messages) == 2, messages  # and icechunk's first, empty commit
    # A failed run's working branch is left over; the next run starts it afresh from main.
    code = ("import sys, icechunk; r = icechunk.Repository.open(icechunk.local_filesystem_"
            "storage(sys.argv[1])); r.create_branch('cloudify-writing', "
            "r.lookup_branch('main')); print(sorted(r.list_branches()))")
    left = subprocess.run([PYTHON, "-c", code, repo], capture_output=True, text=True)
    assert left.stdout.strip() == "['cloudify-writing', 'main']", left.stdout + left.stderr
    # Another codec is another version: a second commit, tagged with it.
    index(cloudify, bucket, "mixed", path, "--codec", "none")
    tags, messages = history(repo)
    assert len(tags) == 2 and len(messages) == 3, (tags, messages)
    assert messages[0].endswith(": the same sources, indexed anew"), messages


def test_a_dataset_of_many_chunks_is_written_in_batches_as_one_commit(cloudify, tmp_path):
    """250 000 chunks: flushed in batches of 100 000 on a working branch, one commit on main
    in the end, the values at the batches' edges equal to the file's."""
    import netCDF4

    steps = 250_000
    path = str(tmp_path / "many.nc")
    values = np.random.default_rng(1).standard_normal((steps, 2)).astype("f4")
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", steps)
        nc.createDimension("x", 2)
        v = nc.createVariable("v", "f4", ("time", "x"), zlib=True, chunksizes=(1, 2))
        v.set_var_chunk_cache(size=1 << 20)
        v[:] = values
    bucket = str(tmp_path / "bucket")
    index(cloudify, bucket, "many", path)
    repo = os.path.join(bucket, "icechunk", "many")
    code = """
import json, sys, xarray as xr
sys.path.insert(0, sys.argv[3])
from read_repos import open_main
r, session = open_main(sys.argv[1])
ds = xr.open_zarr(session.store, zarr_format=3, consolidated=False)
print(json.dumps({"branches": sorted(r.list_branches()),
                  "messages": [s.message for s in r.ancestry(branch="main")],
                  "rows": ds.v.isel(time=json.loads(sys.argv[2])).values.tolist()}))
"""
    # The first and last rows, and those on each side of the batches' edges.
    rows = [0, 1, 99_999, 100_000, 100_001, 199_999, 200_000, 249_999]
    out = subprocess.run([PYTHON, "-c", code, repo, json.dumps(rows), os.path.dirname(READER)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout)
    assert got["branches"] == ["main"], got["branches"]
    assert len(got["messages"]) == 2 and got["messages"][0].endswith(": added many.nc"), got
    np.testing.assert_array_equal(np.array(got["rows"], dtype="f4"), values[rows])
