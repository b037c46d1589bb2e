"""The Lambda Runtime API, emulated for one function process that this script starts itself.

`cargo lambda watch` starts instances on demand and can lose the invocation that starts one,
which makes a cold start unmeasurable through it. Here the bootstrap is started directly with
`AWS_LAMBDA_RUNTIME_API` pointing at this server, so process start, first `next` poll and
first answer are all timed by the caller, and the process id is known for its VmHWM.

Only what a buffered Function URL needs: `invocation/next` hands out queued events (payload
format 2.0), `invocation/ID/response` and `invocation/ID/error` deliver answers.
"""
import base64
import json
import queue
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PREFIX = "/2018-06-01/runtime/"


class RuntimeApi:
    """Start `bootstrap` with `env` as the only instance of a function behind this API."""

    def __init__(self, bootstrap, env, memory_mb=1024):
        self.events = queue.Queue()
        self.answers = {}
        self.first_poll = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle's algorithm and the
            # client's delayed ACK add 40 ms to every answer.
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != PREFIX + "invocation/next":
                    return self.reply(404)
                if api.first_poll is None:
                    api.first_poll = time.perf_counter()
                request_id, event = api.events.get()
                deadline = int((time.time() + 900) * 1000)
                self.reply(200, json.dumps(event).encode(), [
                    ("Lambda-Runtime-Aws-Request-Id", request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                    ("Lambda-Runtime-Invoked-Function-Arn",
                     "arn:aws:lambda:us-east-1:000000000000:function:cloudify-serve"),
                ])

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = self.path[len(PREFIX):].split("/")
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response",
                                                                               "error"):
                    slot = api.answers.get(parts[1])
                    if slot is not None:
                        slot["kind"], slot["body"] = parts[2], body
                        slot["done"].set()
                    return self.reply(202)
                if parts[:2] == ["init", "error"]:
                    raise SystemExit(f"the function failed to start: {body[:500]!r}")
                self.reply(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        port = self.server.server_address[1]
        env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}",
                   AWS_LAMBDA_FUNCTION_NAME="cloudify-serve",
                   AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
                   AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(memory_mb))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([bootstrap], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def get(self, url, timeout=120):
        """Invoke with a Function URL GET of `url` (its host is the function's), and give back
        the status, the headers and the decoded body."""
        parts = urlsplit(url)
        request_id = str(uuid.uuid4())
        slot = {"done": threading.Event()}
        self.answers[request_id] = slot
        now = time.time()
        self.events.put((request_id, {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": parts.path,
            "rawQueryString": parts.query,
            "headers": {"host": parts.netloc, "user-agent": "bench"},
            "requestContext": {
                "accountId": "anonymous", "apiId": "bench",
                "domainName": parts.netloc, "domainPrefix": "bench",
                "http": {"method": "GET", "path": parts.path, "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "bench"},
                "requestId": request_id, "routeKey": "$default", "stage": "$default",
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "timeEpoch": int(now * 1000),
            },
            "isBase64Encoded": False,
        }))
        if not slot["done"].wait(timeout):
            raise TimeoutError(f"the function did not answer {url} in {timeout} s")
        del self.answers[request_id]
        if slot["kind"] == "error":
            raise RuntimeError(f"the function failed on {url}: {slot['body'][:500]!r}")
        answer = json.loads(slot["body"])
        body = answer.get("body") or ""
        body = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
        return answer["statusCode"], answer.get("headers", {}), body

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.server.shutdown()
