"""A static file server on 127.0.0.1 that answers `Range: bytes=a-b` with 206 (Python's
`http.server` ignores Range), with a strong ETag and If-Match; it counts the bytes it sends,
records the paths it is sent GETs for and the Authorization headers it is sent, and may require some headers (401 without). If-None-Match on the current tag is a 304."""
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class RangeServer:
    def __init__(self, root, require=None):
        self.sent = 0
        self.gets = []
        self.authorizations = []
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            # Keep connections open, as real servers do: a client that pools connections
            # (workerd's fetch) otherwise meets connections the server already closed.
            protocol_version = "HTTP/1.1"

            def __init__(self, *a, **kw):
                super().__init__(*a, directory=root, **kw)

            def log_message(self, *a):
                pass

            def refused(self):
                if self.headers.get("Authorization"):
                    outer.authorizations.append(self.headers["Authorization"])
                if any(self.headers.get(k) != v for k, v in (require or {}).items()):
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return True
                return False

            def do_HEAD(self):  # noqa: N802 (http.server's naming)
                if self.refused():
                    return
                path = self.translate_path(self.path)
                if not os.path.isfile(path):
                    return self.send_error(404)
                st = os.stat(path)
                self.send_response(200)
                self.send_header("Content-Length", str(st.st_size))
                self.send_header("ETag", f'"{st.st_size}-{st.st_mtime_ns}"')
                self.end_headers()

            def do_GET(self):  # noqa: N802 (http.server's naming)
                outer.gets.append(self.path)
                if self.refused():
                    return
                path = self.translate_path(self.path)
                if not os.path.isfile(path):
                    return self.send_error(404)
                st = os.stat(path)
                etag = f'"{st.st_size}-{st.st_mtime_ns}"'
                want = self.headers.get("If-Match")
                if want and want != etag:
                    return self.send_error(412)
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    return self.end_headers()
                m = RANGE.match(self.headers.get("Range", ""))
                start, end = 0, st.st_size - 1
                if m:
                    start = int(m.group(1))
                    end = min(int(m.group(2)) if m.group(2) else end, st.st_size - 1)
                    if start >= st.st_size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{st.st_size}")
                        self.send_header("Content-Length", "0")
                        return self.end_headers()
                with open(path, "rb") as f:
                    f.seek(start)
                    body = f.read(end - start + 1)
                self.send_response(206 if m else 200)
                if m:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{st.st_size}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(body)
                outer.sent += len(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
