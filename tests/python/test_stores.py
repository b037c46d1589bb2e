"""The store conformance suite (`cloudify check-store`) on a local folder and on HTTP(S)
sources; the Lambda tier runs it on S3 (moto) and the Worker tier on R2 (wrangler)."""
import subprocess

from range_server import RangeServer
from servers import CONFORMANCE_SMALL, write_conformance_fixture


def check_store(cloudify, url):
    return subprocess.run([cloudify, "check-store", url], capture_output=True, text=True)


def test_a_local_folder_passes(cloudify, tmp_path):
    r = check_store(cloudify, str(tmp_path / "bucket"))
    assert r.returncode == 0, r.stderr
    assert "does everything cloudify needs" in r.stdout
    assert (tmp_path / "bucket" / "conformance" / "small.bin").read_bytes() == CONFORMANCE_SMALL


def test_http_sources_pass(cloudify, tmp_path):
    write_conformance_fixture(str(tmp_path))
    server = RangeServer(str(tmp_path))
    try:
        r = check_store(cloudify, f"{server.url}/conformance/")
        assert r.returncode == 0, r.stderr
    finally:
        server.stop()


def test_a_server_that_ignores_range_fails_and_says_how(cloudify, tmp_path):
    """Python's own http.server answers every GET whole: the suite names what breaks."""
    write_conformance_fixture(str(tmp_path))
    proc = subprocess.Popen(["python3", "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"],
                            cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        line = proc.stdout.readline()
        port = line.split("port ")[1].split()[0]
        r = check_store(cloudify, f"http://127.0.0.1:{port}/conformance/")
        assert r.returncode != 0
        assert "ignored the Range header" in r.stderr, r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)
