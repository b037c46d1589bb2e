"""The Lambda end to end: a bucket indexed by `cloudify index` (sources inside it, named by
key) copied into moto's S3 server, served by the serving function under `cargo lambda watch`
through a fault proxy, by `cloudify serve --bucket s3://…`, and for comparison by
`cloudify serve` on the folder."""
import os
import shutil
import sys

import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "worker"))
from aws import FaultProxy, LambdaWatch, Moto, s3_env  # noqa: E402
from servers import Server, binary, index, indexed_bucket  # noqa: E402
from wrangler import write_big  # noqa: E402

BUCKET, PREFIX = "cloudify-test", "idx"
# As the function is configured below: error bodies name the object at fault, index.json is
# read on every request.
OPERATOR = ("--error-detail", "internal", "--index-ttl", "0")
# A few CMIP6 samples of different calendars and grids (all 326 run in tests/python).
SAMPLES = 6


@pytest.fixture(scope="session")
def cloudify():
    return binary()


@pytest.fixture(scope="session")
def folder(cloudify, tmp_path_factory):
    """{dataset id: source path} indexed into a bucket folder that holds the sources too."""
    root = str(tmp_path_factory.mktemp("bucket"))
    sources = os.path.join(root, "sources")
    # Many small chunks are the py and worker tiers' case; through moto's S3 server (about
    # 10 ms a read) their 3600 keys would take minutes here.
    generated, chosen = indexed_bucket(cloudify, root, SAMPLES, leave_out=["many_chunks"])
    # For the fault tests: a source they delete, one S3 forbids, one that answers late, and one
    # whose served chunk is larger than a buffered Function URL carries.
    for name in ("victim", "forbidden", "slow"):
        path = os.path.join(sources, f"{name}.nc")
        shutil.copyfile(generated["mixed"], path)
        index(cloudify, root, name, path)
    index(cloudify, root, "big", write_big(os.path.join(sources, "big.nc")), "--chunks", "t=600",
          "--codec", "none")
    return root, chosen


@pytest.fixture(scope="session")
def moto():
    m = Moto()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def s3(moto):
    return moto.client()


@pytest.fixture(scope="session")
def bucket(folder, moto, s3):
    """The folder's objects in S3 under PREFIX/, each under its key in the folder."""
    s3.create_bucket(Bucket=BUCKET)
    for base, _, files in os.walk(folder[0]):
        for name in files:
            path = os.path.join(base, name)
            s3.upload_file(path, BUCKET, f"{PREFIX}/{os.path.relpath(path, folder[0])}")
    return folder


@pytest.fixture(scope="session")
def proxy(moto):
    p = FaultProxy(moto.url)
    yield p
    p.stop()


@pytest.fixture(scope="session")
def lam(bucket, proxy, tmp_path_factory):
    env_file = str(tmp_path_factory.mktemp("lambda") / "function.env")
    # The fault tests read which object failed in error bodies (an operator's setting), and the
    # reindex test reads the index it rewrote at once.
    w = LambdaWatch(proxy.url, env_file, {"BUCKET": BUCKET, "INDEX_PREFIX": PREFIX,
                                          "READ_BUDGET_BYTES": str(16 << 20),
                                          "ERROR_DETAIL": "internal",
                                          "INDEX_TTL_SECONDS": "0"})
    w.start_every_instance("/datasets/slow/kerchunk/zlib_shuffle/0.0.0")
    yield w
    w.stop()
    assert not w.panics(), "a function panicked:\n" + "".join(w.panics()[:5])


@pytest.fixture(scope="session")
def native(cloudify, bucket):
    s = Server(cloudify, bucket[0], "--read-budget", str(16 << 20), *OPERATOR)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def s3serve(cloudify, bucket, moto):
    s = Server(cloudify, f"s3://{BUCKET}/{PREFIX}", "--read-budget", str(16 << 20), *OPERATOR,
               env=s3_env(moto.url))
    yield s
    s.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test on the emulator shows the end of its log (CI keeps no files)."""
    outcome = yield
    rep = outcome.get_result()
    lam = item.funcargs.get("lam") if hasattr(item, "funcargs") else None
    if rep.failed and lam is not None:
        with open(lam.log.name, errors="replace") as f:
            rep.sections.append(("cargo lambda watch (last 40 lines)", "".join(f.readlines()[-40:])))
