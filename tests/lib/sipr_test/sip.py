"""A SIP user agent client over UDP for the tests: requests with RFC 3261 transactions
(SipUdp), response parsing (parse_response, Response, ContactValue), and load with a window
(transact_many over one socket, transact_bulk over several)."""
from __future__ import annotations

import heapq
import itertools
import os
import random
import re
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .base import LOCALHOST, scaled

# ------------------------------------------------------------------------------------------------
# SIP messages

COMPACT = {"i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
           "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
           "v": "via", "o": "event", "u": "allow-events", "r": "refer-to", "b": "referred-by",
           "x": "session-expires", "a": "accept-contact", "j": "reject-contact",
           "d": "request-disposition", "y": "identity"}

# Headers whose values are comma-separated lists (RFC 3261 §7.3.1); Date, WWW-Authenticate and the
# like contain commas that are not separators.
LIST_HEADERS = {"via", "contact", "route", "record-route", "path", "allow", "supported", "require",
                "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
                "allow-events", "content-encoding", "in-reply-to", "service-route"}


def split_list(value: str) -> list[str]:
    """Splits a header value at commas outside quotes and angle brackets."""
    out, cur, quoted, angle, i = [], [], False, 0, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\" and i + 1 < len(value):
                cur.append(value[i:i + 2])
                i += 2
                continue
            if ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle += 1
        elif ch == ">":
            angle = max(0, angle - 1)
        elif ch == "," and angle == 0:
            out.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    last = "".join(cur).strip()
    if last or out:
        out.append(last)
    return out


def split_params(text: str) -> list[str]:
    """Splits at ';' outside quotes."""
    out, cur, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def parse_params(text: str) -> dict[str, str | None]:
    """';name=value;flag' → {"name": "value", "flag": None}; names lower-cased, quotes removed."""
    params: dict[str, str | None] = {}
    for p in split_params(text):
        p = p.strip()
        if not p:
            continue
        name, eq, value = p.partition("=")
        v: str | None = value.strip() if eq else None
        if v is not None and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            v = v[1:-1]
        params[name.strip().lower()] = v
    return params


@dataclass
class ContactValue:
    """One element of a Contact header."""
    star: bool = False
    display: str = ""
    uri: str = ""
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def expires(self) -> int | None:
        v = self.params.get("expires")
        return None if v is None else int(v)

    @property
    def q(self) -> str | None:
        return self.params.get("q")


def parse_name_addr(value: str) -> ContactValue:
    """name-addr or addr-spec with header parameters (Contact, From, To, Path...)."""
    v = value.strip()
    if v == "*":
        return ContactValue(star=True)
    if "<" in v:
        lt = v.index("<")
        gt = v.index(">", lt)
        display = v[:lt].strip().strip('"')
        return ContactValue(display=display, uri=v[lt + 1:gt], params=parse_params(v[gt + 1:]))
    uri, _, params = v.partition(";")
    return ContactValue(uri=uri.strip(), params=parse_params(params))


@dataclass
class Response:
    """A parsed SIP response. Header names are lower-case long forms; `headers` keeps every header
    line in order, `values(name)` splits list headers into their elements."""
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes
    source: tuple[str, int] = ("", 0)

    def values(self, name: str) -> list[str]:
        name = name.lower()
        out: list[str] = []
        for n, v in self.headers:
            if n == name:
                out.extend(split_list(v) if n in LIST_HEADERS else [v])
        return out

    def header(self, name: str) -> str | None:
        """The first value of `name` (the whole header line's value), or None."""
        name = name.lower()
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.headers if n == name.lower())

    @property
    def contacts(self) -> list[ContactValue]:
        return [parse_name_addr(v) for v in self.values("contact")]

    def contact_map(self) -> dict[str, ContactValue]:
        return {c.uri: c for c in self.contacts}

    @property
    def top_via(self) -> dict[str, str | None]:
        vias = self.values("via")
        return parse_params(vias[0].partition(";")[2]) if vias else {}

    @property
    def to_tag(self) -> str | None:
        to = self.header("to")
        return None if to is None else parse_name_addr(to).params.get("tag")

    def __str__(self) -> str:
        return self.raw.decode(errors="replace")


class SipParseError(ValueError):
    pass


def parse_response(data: bytes, source: tuple[str, int] = ("", 0)) -> Response:
    """Parses one SIP response datagram (folded lines and compact names understood)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise SipParseError("no blank line after the headers")
    lines = head.decode("utf-8", "replace").split("\r\n")
    m = re.match(r"SIP/2\.0 (\d{3}) ?(.*)$", lines[0])
    if not m:
        raise SipParseError(f"not a SIP response: {lines[0]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # RFC 3261 §7.3.1 folding
            n, v = headers[-1]
            headers[-1] = (n, v + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"header line without a colon: {line!r}")
        name = name.strip().lower()
        headers.append((COMPACT.get(name, name), value.strip()))
    resp = Response(int(m.group(1)), m.group(2), headers, body, data, source)
    clen = resp.header("content-length")
    if clen is not None and int(clen) != len(body):
        raise SipParseError(f"Content-Length {clen} but {len(body)} body bytes")
    return resp


class SipTimeout(AssertionError):
    """No final response within the transaction's time bound."""


_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_ids)}x{random.getrandbits(32):08x}"


@dataclass
class Request:
    method: str
    ruri: str
    branch: str
    call_id: str
    cseq: int
    data: bytes

    def __str__(self) -> str:
        return self.data.decode(errors="replace")


T1 = 0.5
T2 = 4.0


class SipUdp:
    """A UDP user agent client on 127.0.0.1 talking to one server port.

    Requests are built with a Via carrying rport and a fresh RFC 3261 branch, a From tag, Call-ID,
    CSeq, Max-Forwards, any Contacts and extra headers. send() runs a client transaction: it
    retransmits as §17.1.1.2 / §17.1.2.2 say (T1 = 500 ms doubling, capped at T2 for non-INVITE)
    until a final response whose top Via branch and CSeq match, bounded by `timeout`; for INVITE it
    ACKs a non-2xx final response as §17.1.1.3 says."""

    def __init__(self, port: int, host: str = LOCALHOST, rcvbuf: int = 4 << 20):
        self.server = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if opt is None:
                continue
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                break
            except OSError:
                continue
        self.sock.bind((LOCALHOST, 0))
        self.local_port = self.sock.getsockname()[1]
        self.from_tag = unique("ft")
        self.stray: list[Response] = []  # responses that matched no transaction

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "SipUdp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def local(self) -> str:
        return f"{LOCALHOST}:{self.local_port}"

    # -- building
    def build(self, method: str, ruri: str, *, to: str | None = None, from_: str | None = None,
              call_id: str | None = None, cseq: int = 1, cseq_method: str | None = None,
              contacts: Iterable[str] = (), contact_line: bool = False,
              expires: int | str | None = None, headers: Iterable[str | tuple[str, str]] = (),
              body: bytes = b"", branch: str | None = None, rport: bool = True,
              max_forwards: int | None = 70, from_tag: str | None = None,
              via: str | None = None) -> Request:
        """A request. `contacts` are Contact values written as given, one header each, or one
        comma-separated header with contact_line=True. `headers` are extra lines ("Name: value" or
        (name, value)), written after the standard ones."""
        branch = branch or unique("z9hG4bK")
        call_id = call_id or unique("cid") + "@127.0.0.1"
        to = to or f"<{ruri}>"
        if from_ is None:  # the To without its header parameters
            from_ = to[:to.index(">") + 1] if "<" in to else to.split(";")[0]
        tag = from_tag if from_tag is not None else self.from_tag
        lines = [f"{method} {ruri} SIP/2.0",
                 via or f"Via: SIP/2.0/UDP {self.local};branch={branch}" + (";rport" if rport else ""),
                 ]
        if max_forwards is not None:
            lines.append(f"Max-Forwards: {max_forwards}")
        lines += [f"From: {from_}" + (f";tag={tag}" if tag else ""),
                  f"To: {to}",
                  f"Call-ID: {call_id}",
                  f"CSeq: {cseq} {cseq_method or method}"]
        contacts = list(contacts)
        if contacts:
            if contact_line:
                lines.append("Contact: " + ", ".join(contacts))
            else:
                lines += [f"Contact: {c}" for c in contacts]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        for h in headers:
            lines.append(h if isinstance(h, str) else f"{h[0]}: {h[1]}")
        lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        return Request(method, ruri, branch, call_id, cseq, data)

    def register(self, aor: str, contacts: Iterable[str] = (), *, registrar: str | None = None,
                 **kw: Any) -> Request:
        """A REGISTER for `aor` (To and From), Request-URI the AOR's domain unless given."""
        if registrar is None:
            registrar = "sip:" + aor.split("@", 1)[1] if "@" in aor else aor
        kw.setdefault("to", f"<{aor}>")
        return self.build("REGISTER", registrar, contacts=contacts, **kw)

    def options(self, ruri: str | None = None, **kw: Any) -> Request:
        """OPTIONS addressed to the server itself (no user part): its health probe."""
        ruri = ruri or f"sip:{self.server[0]}:{self.server[1]}"
        kw.setdefault("headers", ["Accept: application/sdp"])
        return self.build("OPTIONS", ruri, **kw)

    # -- sending
    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def recv(self, timeout: float) -> Response | None:
        """The next response datagram within `timeout`, or None. Unparsable datagrams fail."""
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return None
        data, src = self.sock.recvfrom(65536)
        try:
            return parse_response(data, src)
        except SipParseError as e:
            raise AssertionError(f"unparsable datagram from {src}: {e}: {data[:300]!r}")

    def answer_raw(self, data: bytes, branch: str, timeout: float = 3.0) -> Response:
        """Sends `data` once, as it is (no retransmission, no matching beyond the branch), and
        returns the first response whose top Via branch is `branch`; `timeout` is scaled."""
        self.send_raw(data)
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            r = self.recv(deadline - time.monotonic())
            if r is not None and r.top_via.get("branch") == branch:
                return r
        raise AssertionError(f"no answer within {scaled(timeout):.1f}s to {data[:120]!r}")

    def expect_silence(self, seconds: float) -> None:
        """Fails if any datagram arrives within `seconds`."""
        r = self.recv(seconds)
        assert r is None, f"expected no answer, got {r.status if r else ''} {r.reason if r else ''}"

    def matches(self, req: Request, resp: Response) -> bool:
        cseq = (resp.header("cseq") or "").split()
        return (resp.top_via.get("branch") == req.branch and len(cseq) == 2
                and cseq[0] == str(req.cseq) and cseq[1] == req.method)

    def send(self, req: Request, timeout: float = 8.0, retransmit: bool = True,
             accept_provisional: bool = False) -> Response:
        """Runs one client transaction; returns its final response (or the first provisional one
        with accept_provisional). `timeout` is scaled by time_scale()."""
        deadline = time.monotonic() + scaled(timeout)
        interval = T1
        next_send = time.monotonic()
        invite = req.method == "INVITE"
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise SipTimeout(f"no final response to {req.method} {req.ruri} within "
                                 f"{scaled(timeout):.1f}s (Call-ID {req.call_id})")
            if now >= next_send:
                self.send_raw(req.data)
                if not retransmit:
                    next_send = deadline
                else:
                    next_send = now + interval
                    interval = interval * 2 if invite else min(interval * 2, T2)
            resp = self.recv(min(next_send, deadline) - time.monotonic())
            if resp is None:
                continue
            if not self.matches(req, resp):
                self.stray.append(resp)
                continue
            if resp.status < 200:
                if accept_provisional:
                    return resp
                if not invite:
                    interval = T2  # §17.1.2.2: Proceeding retransmits every T2
                continue
            if invite and resp.status >= 300:
                self.send_raw(self.ack_for(req, resp).data)
            return resp

    def ack_for(self, invite: Request, resp: Response) -> Request:
        """The ACK of a non-2xx final response to `invite` (§17.1.1.3): same branch, Call-ID,
        From, CSeq number, the response's To."""
        text = invite.data.decode()
        head = text.split("\r\n\r\n")[0].split("\r\n")
        from_line = next(l for l in head if l.lower().startswith("from:"))
        via_line = head[1]
        lines = [f"ACK {invite.ruri} SIP/2.0", via_line, "Max-Forwards: 70", from_line,
                 f"To: {resp.header('to')}", f"Call-ID: {invite.call_id}",
                 f"CSeq: {invite.cseq} ACK", "Content-Length: 0"]
        return Request("ACK", invite.ruri, invite.branch, invite.call_id, invite.cseq,
                       ("\r\n".join(lines) + "\r\n\r\n").encode())

    def transact(self, method: str, ruri: str, timeout: float = 8.0, **kw: Any) -> Response:
        return self.send(self.build(method, ruri, **kw), timeout=timeout)


_STATUS_RE = re.compile(rb"^SIP/2\.0 (\d{3})")
_BRANCH_RE = re.compile(rb"\r\n(?:Via|v)[ \t]*:[^\r\n]*?;branch=([^;,\s]+)", re.I)


@dataclass
class BulkResult:
    status: int | None = None
    response: bytes = b""
    sends: int = 0


def transact_many(port: int, requests: Sequence[Request], window: int = 32,
                  timeout: float = 60.0, keep_response: bool = False) -> list[BulkResult]:
    """Sends `requests` to 127.0.0.1:`port` from one socket with at most `window` outstanding,
    retransmitting each as §17.1.2.2 does (T1 doubling, capped at T2) until its final response,
    matched by top-Via branch. Returns one result per request (status None if none came before the
    scaled `timeout`). Parses only the status line and branch, so it keeps up with large 200s."""
    ua = SipUdp(port, rcvbuf=16 << 20)
    results = [BulkResult() for _ in requests]
    by_branch = {r.branch.encode(): i for i, r in enumerate(requests)}
    pending: dict[int, tuple[float, float]] = {}  # index -> (next send time, interval)
    deadline = time.monotonic() + scaled(timeout)
    nxt = 0
    done = 0
    try:
        while done < len(requests) and time.monotonic() < deadline:
            now = time.monotonic()
            while nxt < len(requests) and len(pending) < window:
                ua.send_raw(requests[nxt].data)
                results[nxt].sends += 1
                pending[nxt] = (now + T1, T1)
                nxt += 1
            for i, (when, interval) in list(pending.items()):
                if when <= now:
                    ua.send_raw(requests[i].data)
                    results[i].sends += 1
                    interval = min(interval * 2, T2)
                    pending[i] = (now + interval, interval)
            wake = min((w for w, _ in pending.values()), default=now + 0.05)
            r, _, _ = select.select([ua.sock], [], [], max(0.0, min(wake, deadline) - now))
            while r:
                data = ua.sock.recv(65536)
                m = _STATUS_RE.match(data)
                b = _BRANCH_RE.search(data)
                if m and b:
                    i = by_branch.get(b.group(1))
                    status = int(m.group(1))
                    if i is not None and status >= 200 and results[i].status is None:
                        results[i].status = status
                        if keep_response:
                            results[i].response = data
                        pending.pop(i, None)
                        done += 1
                r, _, _ = select.select([ua.sock], [], [], 0)
    finally:
        ua.close()
    return results



# ------------------------------------------------------------------------------------------------
# Bulk transactions over several sockets (added for test_redirect.py)

@dataclass
class BulkRun:
    """The outcome of transact_bulk(): per request its final status (0: none before the deadline)
    and how often it was sent; the responses of the requests asked for in `keep`; elapsed seconds
    from the first send to the last final response."""
    statuses: list[int]
    sends: list[int]
    kept: dict[int, bytes]
    elapsed: float

    @property
    def answered(self) -> int:
        return sum(1 for s in self.statuses if s)

    @property
    def retransmissions(self) -> int:
        return sum(self.sends) - sum(1 for n in self.sends if n)


def transact_bulk(port: int, requests: Sequence[Request], window: int = 200, sockets: int = 4,
                  timeout: float = 120.0, keep: Iterable[int] = ()) -> BulkRun:
    """Like transact_many(), for large loads: the requests go to 127.0.0.1:`port` round-robin
    from `sockets` sockets (so that SO_REUSEPORT spreads them over the daemon's workers), at most
    `window` outstanding in all, each retransmitted T1, 2*T1, ... capped at T2 until its final
    response (matched by top-Via branch). The requests should carry `;rport` (RFC 3581): a
    response goes to the socket that sent the request, whatever port its Via names. Retransmission
    timers live in a heap, so the cost per message does not grow with the window. Bounded by the
    scaled `timeout`."""
    uas = [SipUdp(port, rcvbuf=16 << 20) for _ in range(max(1, sockets))]
    for ua in uas:
        ua.sock.setblocking(False)
    by_fd = {ua.sock.fileno(): ua.sock for ua in uas}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    n = len(requests)
    statuses = [0] * n
    sends = [0] * n
    keep_set = set(keep)
    kept: dict[int, bytes] = {}
    by_branch = {r.branch.encode(): i for i, r in enumerate(requests)}
    timers: list[tuple[float, int, float]] = []  # (when, index, interval)
    server = (LOCALHOST, port)

    def send(i: int) -> None:
        sends[i] += 1
        try:
            uas[i % len(uas)].sock.sendto(requests[i].data, server)
        except (BlockingIOError, InterruptedError):
            pass  # as if lost: the retransmission timer covers it

    start = time.monotonic()
    deadline = start + scaled(timeout)
    last = start
    outstanding = nxt = done = 0
    try:
        while done < n:
            now = time.monotonic()
            if now >= deadline:
                break
            while nxt < n and outstanding < window:
                send(nxt)
                heapq.heappush(timers, (now + T1, nxt, T1))
                outstanding += 1
                nxt += 1
            while timers and timers[0][0] <= now:
                _, i, interval = heapq.heappop(timers)
                if statuses[i]:
                    continue
                send(i)
                interval = min(interval * 2, T2)
                heapq.heappush(timers, (now + interval, i, interval))
            wake = timers[0][0] if timers else now + 0.05
            for fd, _ in poller.poll(max(0.0, min(wake, deadline) - now) * 1000):
                sock = by_fd[fd]
                while True:
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    m = _STATUS_RE.match(data)
                    b = _BRANCH_RE.search(data)
                    if not (m and b):
                        continue
                    i = by_branch.get(b.group(1))
                    status = int(m.group(1))
                    if i is None or status < 200 or statuses[i]:
                        continue
                    statuses[i] = status
                    if i in keep_set:
                        kept[i] = data
                    outstanding -= 1
                    done += 1
                    last = time.monotonic()
    finally:
        for ua in uas:
            ua.close()
    return BulkRun(statuses, sends, kept, last - start)
