"""A browser on another origin: headless Chromium (the Debian package) loads a page from a plain
static file server that walks the STAC catalog with fetch and reads `/zarr3` with zarrita (the
npm package, bundled by esbuild), from `cloudify serve` and from the Worker under `wrangler dev`;
the values it prints equal the source's, read by netCDF4. The dataset summary page renders its
map: a screenshot whose map area is checked to be non-blank."""
import html
import json
import os
import re
import shutil
import subprocess
import sys

import netCDF4
import numpy as np
import pytest
from PIL import Image

from servers import ROOT

CHROMIUM = shutil.which("chromium")
ESBUILD = os.path.join(ROOT, "node_modules", ".bin", "esbuild")
HERE = os.path.dirname(__file__)


def chromium(*args):
    """Chromium headless, as root in a container, given time for the page's requests."""
    assert CHROMIUM, "no chromium: scripts/test installs the Debian package"
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                          "--hide-scrollbars", "--virtual-time-budget=30000", *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The reader page (tests/worker/browser/reader.js bundled) on its own origin."""
    folder = tmp_path_factory.mktemp("page")
    subprocess.run([ESBUILD, os.path.join(HERE, "browser", "reader.js"), "--bundle",
                    "--format=esm", f"--outfile={folder / 'reader.js'}", "--log-level=warning"],
                   check=True)
    (folder / "index.html").write_text('<!doctype html><html><body><pre id="out"></pre>'
                                       '<script type="module" src="reader.js"></script>'
                                       '</body></html>')
    # Port 0: the server names the port it took once it listens.
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind",
                               "127.0.0.1", "--directory", str(folder)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = re.search(r"port (\d+)", server.stdout.readline()).group(1)
    yield f"http://127.0.0.1:{port}/index.html"
    server.terminate()
    server.wait()


@pytest.mark.parametrize("runtime", ["native", "worker"])
def test_a_page_on_another_origin_reads_the_catalog_and_zarr3_with_zarrita(page, bucket,
                                                                            runtime, request):
    function = request.getfixturevalue(runtime)
    query = f"base={function.url}&collection=datasets&item=mixed&array=zlib_shuffle"
    dom = chromium("--dump-dom", f"{page}?{query}")
    found = re.search(r'<pre id="out" data-done="1">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    result = json.loads(html.unescape(found.group(1)))
    assert "error" not in result, result
    assert result["catalog"] == "cloudify" and result["item"] == "mixed"
    assert result["catalog_type"] == "application/json"
    assert result["item_type"] == "application/geo+json"
    with netCDF4.Dataset(os.path.join(bucket[0], "sources", "mixed.nc")) as ds:
        v = ds["zlib_shuffle"]
        v.set_auto_mask(False)
        assert result["shape"] == list(v.shape)
        expected = v[0].ravel()
    actual = np.array([np.nan if x is None else x for x in result["values"]], dtype=v.dtype)
    np.testing.assert_array_equal(actual, expected)


def colourful(image, box):
    """Pixels in `box` whose channels differ by more than a grey's: a colour map's."""
    pixels = np.asarray(image.convert("RGB").crop(box), dtype=np.int16)
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 40).sum())


@pytest.mark.parametrize("runtime", ["native", "worker"])
def test_the_summary_page_renders_its_map(bucket, runtime, request, tmp_path):
    function = request.getfixturevalue(runtime)
    shot = tmp_path / "summary.png"
    chromium(f"--screenshot={shot}", "--window-size=1000,1000", f"{function.url}/datasets/mixed/")
    image = Image.open(shot)
    assert image.size == (1000, 1000)
    # The map sits below the title and the opening snippet: most of that area is coloured,
    # and none of the band above it (text only).
    width, height = image.size
    assert colourful(image, (0, 0, width, 180)) == 0
    assert colourful(image, (0, 180, width, 760)) > 0.25 * 400 * 500
