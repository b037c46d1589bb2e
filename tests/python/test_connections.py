"""`cloudify serve` against clients that hold connections: connecting and sending nothing, or
dripping request headers a byte at a time. Such connections used to be held for as long as
the client liked; past the process's open-file limit every accept failed, the accept loop
spun writing a line per failure, and normal requests went unanswered.

The server here may open 256 files (room for 192 connections) and times out headers after
2 s and kept-alive connections after 3 s (longer than the header timeout, so the two can be
told apart)."""
import os
import resource
import selectors
import socket
import threading
import time

import pytest
import requests

from servers import Server, index

HEADER_S = 2
IDLE_S = 3
FILES = 256
DRIP_S = 0.5
PATH = "/datasets/mixed/zarr/.zmetadata"


def few_files():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))


@pytest.fixture(scope="module")
def bucket(cloudify, generated, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("connections"))
    index(cloudify, root, "mixed", generated["mixed"])
    return root


@pytest.fixture
def server(cloudify, bucket):
    env = dict(os.environ, CLOUDIFY_HEADER_TIMEOUT_SECONDS=str(HEADER_S),
               CLOUDIFY_IDLE_TIMEOUT_SECONDS=str(IDLE_S))
    s = Server(cloudify, bucket, env=env, preexec_fn=few_files)
    yield s
    s.stop()


def address(server):
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def cpu_seconds(pid):
    """User and system time of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SlowClients(threading.Thread):
    """`idle` connections that send nothing and `dripping` ones that send a request line and
    the start of a header, then one more byte every DRIP_S seconds. The thread drips and notes
    how long each connection was open when the server ended it (closed it or answered); it
    ends when the server has ended them all. Connecting stops at the first connection the
    server's backlog has no room for."""

    def __init__(self, addr, idle, dripping):
        super().__init__(daemon=True)
        self.selector = selectors.DefaultSelector()
        self.opened = {}
        self.open_for = []
        self.dripping = []
        self.unconnected = 0
        for i in range(idle + dripping):
            try:
                s = socket.create_connection(addr, timeout=2)
            except OSError:
                # The server's backlog is full: it accepts no more.
                self.unconnected = idle + dripping - i
                break
            s.setblocking(False)
            if i >= idle:
                s.send(b"GET /datasets HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                self.dripping.append(s)
            self.opened[s] = time.monotonic()
            self.selector.register(s, selectors.EVENT_READ)
        self.start()

    def run(self):
        drip = time.monotonic() + DRIP_S
        while self.opened:
            for key, _ in self.selector.select(timeout=max(0, drip - time.monotonic())):
                self._ended(key.fileobj)
            if time.monotonic() >= drip:
                for s in self.dripping:
                    if s in self.opened:
                        try:
                            s.send(b"a")
                        except OSError:
                            self._ended(s)
                drip += DRIP_S

    def _ended(self, s):
        if s in self.opened:
            self.open_for.append(time.monotonic() - self.opened.pop(s))
            self.selector.unregister(s)
            s.close()


def test_slow_and_idle_connections_leave_room_for_normal_requests(server):
    pid = server.proc.pid
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    clients = SlowClients(address(server), idle=200, dripping=200)
    answers = []
    for _ in range(10):
        start = time.monotonic()
        try:
            status = requests.get(server.url + PATH, timeout=3).status_code
        except requests.RequestException as e:
            status = type(e).__name__
        answers.append((status, round(time.monotonic() - start, 3)))
        time.sleep(0.1)
    clients.join(timeout=HEADER_S + 5)
    cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0

    assert all(status == 200 for status, _ in answers), answers
    assert max(seconds for _, seconds in answers) < 1.0, answers
    assert clients.unconnected == 0
    # Past the 192 connections the server holds, the one idle longest made room for each
    # newcomer; the header timeout ended the others, dripping or not.
    assert not clients.opened, f"{len(clients.opened)} of 400 connections still open"
    assert max(clients.open_for) < HEADER_S + 2, max(clients.open_for)
    log = server.log()
    assert len(log) < 50_000 and log.count("\n") < 300, (len(log), log[-2000:])
    assert cpu < 0.5 * wall, f"{cpu:.1f} s of CPU in {wall:.1f} s"


def test_a_connection_dripping_its_headers_is_closed_after_the_header_timeout(server):
    s = socket.create_connection(address(server), timeout=DRIP_S)
    s.sendall(b"GET /datasets HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    t0 = time.monotonic()
    ended = None
    while time.monotonic() - t0 < HEADER_S + 3:
        try:
            s.sendall(b"a")
            ended = s.recv(100)  # b"" when closed, or an answer (a 408)
            break
        except socket.timeout:
            continue
        except OSError as e:
            ended = e
            break
    took = time.monotonic() - t0
    s.close()
    assert ended is not None, f"still open after {took:.1f} s"
    assert ended == b"" or isinstance(ended, OSError) or ended.startswith(b"HTTP/1.1 408"), ended
    assert HEADER_S - 0.5 < took < HEADER_S + 2, took


def read_answer(s):
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += s.recv(65536)
    return head.split(b"\r\n")[0]


def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(server):
    s = socket.create_connection(address(server), timeout=IDLE_S + 3)
    s.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert read_answer(s) == b"HTTP/1.1 200 OK"
    t0 = time.monotonic()
    try:
        ended = s.recv(100)
    except socket.timeout:
        ended = "still open"
    except OSError as e:
        ended = e
    took = time.monotonic() - t0
    s.close()
    assert ended == b"" or isinstance(ended, OSError), ended
    # Kept for the idle timeout, not only the header timeout.
    assert IDLE_S - 0.5 < took < IDLE_S + 2, took
