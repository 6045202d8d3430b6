"""sip-redirectd and sip-registrard over TCP beside UDP on the same port (issue 17; RFC 3261 §18.2.1, §18.3, §18.2.2;
RFC 5626 §3.5.1), against a real redis-server, with raw TCP sockets: a 302 over TCP with
received/rport on the Via; pipelined and split requests answered in order; the CRLF ping; a
40-contact AOR whole over TCP and cut over UDP; each connection limit hit once, with its metric;
REGISTERs over TCP, pipelined, and a 200 listing 40 bindings over TCP where UDP cuts it.

    /usr/bin/python3 -m pytest tests/integration/test_stream.py [-k name-substring]
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import pytest

from sipr_test.base import scaled, wait_until
from sipr_test.bindings import StoredBinding, location_key, pack_binding
from sipr_test.processes import ServiceDaemon
from sipr_test.redis_servers import RedisServer, time_ms
from sipr_test.sip import Request, Response, SipUdp, parse_response, unique
from sipr_test.sipp import run_sipp

DOMAIN = "example.com"
ENV = {**os.environ, "SIPR_SECRET": "stream-integration-secret"}


class Redirect(ServiceDaemon):
    def __init__(self, redis: RedisServer, flags: list[str], workers: int = 1):
        super().__init__("sip-redirectd", redis.url, ["--domain", DOMAIN, *flags],
                         name="sip-redirectd[tcp]", workers=workers, env=ENV)


def aor(user: str) -> str:
    return f"sip:{user}@{DOMAIN}"


def seed(redis: RedisServer, user: str, n: int = 1) -> list[str]:
    """`n` bindings of `user`, q descending, written straight into Redis; their contacts."""
    now = time_ms(redis.client)
    contacts = []
    for i in range(n):
        c = f"sip:{user}-{i:02d}@198.51.100.{i + 1}:5060"
        b = StoredBinding(expires_at_ms=now + 600_000, updated_at_ms=now, cseq=1,
                          call_id=unique("seed"), contact=c, q=1000 - 20 * i, path="",
                          received="192.0.2.250:5060", user_agent="seed", instance="",
                          reg_id=None)
        redis.client.hset(location_key(aor(user)), c, pack_binding(b))
        contacts.append(c)
    return contacts


class SipTcp:
    """A raw TCP client: requests built as SipUdp builds them, with a TCP Via."""

    def __init__(self, port: int, source: str = "127.0.0.1", rcvbuf: int | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local = "%s:%d" % self.sock.getsockname()
        self.builder = SipUdp(port)  # only for build(); its UDP socket stays unused
        self.buf = b""

    def close(self) -> None:
        self.sock.close()
        self.builder.close()

    def __enter__(self) -> "SipTcp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def invite(self, user: str, **kw) -> Request:
        branch = unique("z9hG4bK")
        return self.builder.build("INVITE", aor(user), branch=branch,
                                  via=f"Via: SIP/2.0/TCP {self.local};branch={branch};rport", **kw)

    def register(self, user: str, contacts, **kw) -> Request:
        branch = unique("z9hG4bK")
        return self.builder.register(aor(user), contacts, branch=branch,
                                     via=f"Via: SIP/2.0/TCP {self.local};branch={branch};rport",
                                     **kw)

    def read_message(self, timeout: float = 5.0) -> Response:
        """The next response, framed by its Content-Length."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end >= 0:
                head = self.buf[:head_end + 4].decode()
                length = 0
                for line in head.split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() in ("content-length", "l"):
                        length = int(value)
                if len(self.buf) >= head_end + 4 + length:
                    raw = self.buf[:head_end + 4 + length]
                    self.buf = self.buf[len(raw):]
                    return parse_response(raw)
            self.fill(deadline)

    def fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        assert left > 0, f"no complete answer in time; have {self.buf[:200]!r}"
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        assert data, f"the server closed the connection; have {self.buf[:200]!r}"
        self.buf += data

    def closed_by_server(self, timeout: float) -> bool:
        """Whether the server closes (FIN or reset) within `timeout` s, reading what comes."""
        deadline = time.monotonic() + scaled(timeout)
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not data:
                return True
            self.buf += data
        return False


def wait_metric(d: ServiceDaemon, name: str, want: float, **labels: str) -> None:
    wait_until(lambda: d.metric(name, **labels) == want, scaled(5), what=f"{name}{labels} == {want}")


@pytest.fixture(scope="module")
def redirect(redis_server):
    with Redirect(redis_server, ["--cache-ttl", "0"], workers=2) as d:
        yield d


def test_302_over_tcp_with_received_and_rport(redis, redirect):
    contacts = seed(redis, "alice")
    with SipTcp(redirect.port) as c:
        req = c.invite("alice")
        c.sock.sendall(req.data)
        r = c.read_message()
        assert r.status == 302
        assert [x.uri for x in r.contacts] == contacts
        assert r.top_via.get("branch") == req.branch
        assert r.raw.decode().split("\r\n")[1].startswith("Via: SIP/2.0/TCP "), "Via copied"
        assert r.top_via.get("rport") == c.local.split(":")[1], "rport filled (RFC 3581 §4)"
        assert r.top_via.get("received") == "127.0.0.1"
        # The connection stays open for the next request.
        c.sock.sendall(c.invite("nobody").data)
        assert c.read_message().status == 404
    assert redirect.metric("sipr_connections_accepted_total") >= 1


def test_sipp_over_tcp_gets_the_302_and_acks_it(redis, redirect):
    """invite_302.xml over TCP (sipp -t t1): one connection, the INVITE answered by a 302 whose
    only Contact is the binding's, the ACK absorbed (nothing comes back for it)."""
    contact = seed(redis, "alice")[0]
    acks = redirect.metric("sipr_requests_total", method="ACK")
    with tempfile.TemporaryDirectory(prefix="sipr-inf-") as work:
        inf = Path(work) / "contact.csv"
        inf.write_text(f"SEQUENTIAL\n{contact};\n")
        res = run_sipp("invite_302.xml", redirect.port, service="alice",
                       args=["-t", "t1", "-inf", str(inf)])
    assert res.returncode == 0, f"sipp -t t1 invite_302.xml failed: {res.summary()}"
    assert "TCP message sent" in res.messages, "SIPp spoke TCP"
    wait_metric(redirect, "sipr_requests_total", acks + 1, method="ACK")


def test_pipelined_and_split_requests_answered_in_order(redis, redirect):
    seed(redis, "alice")
    seed(redis, "bob", 2)
    users = ["alice", "nobody", "bob", "alice", "nobody2", "bob"] * 3
    want = [404 if u.startswith("nobody") else 302 for u in users]
    with SipTcp(redirect.port) as c:
        reqs = [c.invite(u) for u in users]
        c.sock.sendall(b"".join(r.data for r in reqs))  # one write: several messages a read
        got = [c.read_message() for _ in reqs]
        assert [r.status for r in got] == want
        assert [r.top_via.get("branch") for r in got] == [r.branch for r in reqs], "in order"
        # One message over many reads: byte by byte, with a body, then in two odd halves.
        req = c.invite("bob", body=b"v=0\r\n", headers=["Content-Type: application/sdp"])
        for i in range(len(req.data)):
            c.sock.send(req.data[i:i + 1])
        r = c.read_message()
        assert r.status == 302 and r.top_via.get("branch") == req.branch
        a, b = c.invite("alice"), c.invite("bob")
        both = a.data + b.data
        c.sock.sendall(both[:len(a.data) - 7])
        time.sleep(0.05)
        c.sock.sendall(both[len(a.data) - 7:])
        assert [c.read_message().top_via.get("branch") for _ in range(2)] == [a.branch, b.branch]


def test_crlf_ping_gets_a_pong(redis, redirect):
    seed(redis, "alice")
    with SipTcp(redirect.port) as c:
        c.sock.sendall(b"\r\n\r\n")
        c.sock.settimeout(scaled(3))
        assert c.sock.recv(16) == b"\r\n", "RFC 5626 §3.5.1: CRLFCRLF gets one CRLF"
        # A lone CRLF (a pong of ours echoed, say) is skipped; requests go on.
        req = c.invite("alice")
        c.sock.sendall(b"\r\n" + req.data + b"\r\n\r\n")
        assert c.read_message().status == 302
        if not c.buf:  # the pong may have come with the 302
            c.fill(time.monotonic() + scaled(3))
        assert c.buf == b"\r\n", "the ping after the request answered after its 302"


def test_40_contacts_whole_over_tcp_cut_over_udp(redis, redirect):
    contacts = seed(redis, "carol", 40)
    with SipTcp(redirect.port) as c:
        c.sock.sendall(c.invite("carol").data)
        r = c.read_message()
        assert r.status == 302 and [x.uri for x in r.contacts] == contacts, "every contact"
        assert len(r.raw) > 1300
    with SipUdp(redirect.port) as ua:
        req = ua.build("INVITE", aor("carol"), headers=["X-Pad: " + "p" * 400])
        r = ua.send(req)
        assert r.status == 302 and len(r.raw) <= 1300
        assert 0 < len(r.contacts) < 40
        assert [x.uri for x in r.contacts] == contacts[:len(r.contacts)], "highest q kept"


def test_framing_errors_answered_then_closed(redis, redirect):
    with SipTcp(redirect.port) as c:
        req = c.invite("alice")
        c.sock.sendall(req.data.replace(b"Content-Length: 0\r\n", b""))
        r = c.read_message()
        assert (r.status, r.reason) == (400, "Missing Content-Length")
        assert r.top_via.get("branch") == req.branch
        assert c.closed_by_server(3)
    with SipTcp(redirect.port) as c:
        c.sock.sendall(c.invite("alice").data.replace(b"Content-Length: 0", b"Content-Length: -1"))
        r = c.read_message()
        assert (r.status, r.reason) == (400, "Bad Content-Length")
        assert c.closed_by_server(3)
    # Beyond --max-message (8192 by default): 513, then the connection is closed.
    with SipTcp(redirect.port) as c:
        c.sock.sendall(c.invite("alice").data.replace(b"Content-Length: 0",
                                                      b"Content-Length: 9000"))
        r = c.read_message()
        assert (r.status, r.reason) == (513, "Message Too Large")
        assert c.closed_by_server(3)
    # A head that never ends within the buffer: nothing to answer, closed.
    with SipTcp(redirect.port) as c:
        c.sock.sendall(b"INVITE sip:alice@example.com SIP/2.0\r\nSubject: " + b"x" * 9000)
        assert c.closed_by_server(3) and c.buf == b""
    wait_metric(redirect, "sipr_connections_closed_total", 4, reason="protocol")


def test_connection_caps_per_source_and_per_instance(redis_server):
    with Redirect(redis_server, ["--tcp-max-connections", "4", "--tcp-max-per-source", "3"]) as d:
        seed(redis_server, "alice")
        kept = [SipTcp(d.port) for _ in range(3)]
        try:
            wait_metric(d, "sipr_connections_open", 3)
            with SipTcp(d.port) as over:  # a 4th from 127.0.0.1: reset at once
                assert over.closed_by_server(3)
            wait_metric(d, "sipr_connections_refused_total", 1, reason="per_source")
            with SipTcp(d.port, source="127.0.0.2") as other:  # another source: served
                other.sock.sendall(other.invite("alice").data)
                assert other.read_message().status == 302
                with SipTcp(d.port, source="127.0.0.3") as fifth:  # the instance's 5th
                    assert fifth.closed_by_server(3)
            wait_metric(d, "sipr_connections_refused_total", 1, reason="connections")
            # UDP is served all along, and the kept connections too.
            with SipUdp(d.port) as ua:
                assert ua.send(ua.build("INVITE", aor("alice"))).status == 302
            kept[0].sock.sendall(kept[0].invite("alice").data)
            assert kept[0].read_message().status == 302
        finally:
            for k in kept:
                k.close()


def test_idle_and_slow_head_connections_closed(redis_server):
    with Redirect(redis_server, ["--tcp-idle-timeout", "1", "--tcp-head-timeout", "300"]) as d:
        with SipTcp(d.port) as idle, SipTcp(d.port) as slow:
            slow.sock.sendall(b"INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h")
            t0 = time.monotonic()
            assert slow.closed_by_server(1.5), "an incomplete head past its deadline"
            assert time.monotonic() - t0 < scaled(1.0), "closed by the head deadline, not idle"
            assert idle.closed_by_server(3), "nothing sent for the idle timeout"
        wait_metric(d, "sipr_connections_closed_total", 1, reason="head_timeout")
        wait_metric(d, "sipr_connections_closed_total", 1, reason="idle")


def test_client_that_does_not_read_is_disconnected(redis_server):
    with Redirect(redis_server, ["--tcp-max-write-buffer", "65536"]) as d:
        seed(redis_server, "carol", 40)  # ~3 KB a 302
        with SipTcp(d.port, rcvbuf=4096) as c:
            req = c.invite("carol").data
            c.sock.settimeout(scaled(5))
            sent = 0
            try:
                while sent < 20000 and d.metric("sipr_connections_closed_total",
                                                reason="write_backlog") == 0:
                    c.sock.sendall(req * 100)
                    sent += 100
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                pass
        wait_metric(d, "sipr_connections_closed_total", 1, reason="write_backlog")
        wait_metric(d, "sipr_connections_open", 0)


def test_registrar_over_tcp(redis_server):
    flags = ["--domain", DOMAIN, "--max-contacts", "100", "--min-expires", "1"]
    with ServiceDaemon("sip-registrard", redis_server.url, flags, name="sip-registrard[tcp]",
                       workers=1, env=ENV) as reg, SipTcp(reg.port) as c:
        # Two REGISTERs in one write, answered in order on the connection.
        a = c.register("dave", ["<sip:dave@192.0.2.1>"], expires=600)
        b = c.register("erin", ["<sip:erin@192.0.2.2>"], expires=600)
        c.sock.sendall(a.data + b.data)
        got = [c.read_message() for _ in range(2)]
        assert [r.status for r in got] == [200, 200]
        assert [r.top_via.get("branch") for r in got] == [a.branch, b.branch]
        assert [x.uri for x in got[1].contacts] == ["sip:erin@192.0.2.2"]
        # 40 bindings: the 200 over TCP lists them all, one over UDP is cut to 1300 bytes.
        contacts = [f"<sip:frank-{i:02d}@198.51.100.{i + 1}:5060>" for i in range(40)]
        req = c.register("frank", contacts, expires=600, cseq=1)
        c.sock.sendall(req.data)
        r = c.read_message()
        assert r.status == 200 and len(r.contacts) == 40 and len(r.raw) > 1300
        with SipUdp(reg.port) as ua:
            fetch = ua.register(aor("frank"), [], headers=["X-Pad: " + "p" * 400])
            u = ua.send(fetch)
            assert u.status == 200 and len(u.raw) <= 1300 and 0 < len(u.contacts) < 40
