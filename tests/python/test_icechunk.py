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
    return sorted(set(info["skipped"]) | set(info["routes"]["kerchunk"]["excluded"]))


def test_every_dataset_opens_through_icechunk_with_the_sources_values(datasets, server):
    bucket, sources = datasets
    jobs = [{"repo": os.path.join(bucket, "icechunk", ds_id), "sources": path,
             "left_out": left_out(server, ds_id)} for ds_id, path in sources.items()]
    out = read(jobs)
    assert out.returncode == 0, failures(out)
    assert out.stdout.count("ok ") == len(jobs), out.stdout[-2000:]


def test_a_multi_file_dataset_is_one_array_per_variable(cloudify, tmp_path, start_server):
    bucket = str(tmp_path / "bucket")
    pieces = [make_files.model_piece(str(tmp_path / f"piece{i}.nc"), np.arange(n) + start, seed=i)
              for i, (n, start) in enumerate([(40, 0), (40, 40), (25, 80)])]
    index(cloudify, bucket, "pieces", *pieces, "--concat-dim", "time")
    server = start_server(bucket)
    out = read([{"repo": os.path.join(bucket, "icechunk", "pieces"), "sources": pieces,
                 "left_out": left_out(server, "pieces")}])
    assert out.returncode == 0, failures(out)


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
    code = ("import sys, icechunk; r = icechunk.Repository.open(icechunk.local_filesystem_storage("
            "sys.argv[1])); print(sorted(r.list_tags())); "
            "print([s.message for s in r.ancestry(branch='main')])")
    repo = os.path.join(bucket, "icechunk", "mixed")
    once = subprocess.run([PYTHON, "-c", code, repo], capture_output=True, text=True)
    tags, messages = once.stdout.splitlines()[:2]
    version = json.load(open(os.path.join(bucket, "index.json")))["datasets"]["mixed"]["version"]
    assert tags == str([version]) and messages.count("cloudify ") == 1, once.stdout
    # Another codec is another version: a second commit, tagged with it.
    index(cloudify, bucket, "mixed", path, "--codec", "none")
    again = subprocess.run([PYTHON, "-c", code, repo], capture_output=True, text=True)
    assert again.stdout.splitlines()[1].count("cloudify ") == 2, again.stdout
