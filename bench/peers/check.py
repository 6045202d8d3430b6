#!/usr/bin/env python3
"""Functional check of a benchmark peer before it is measured (bench/peers/README.md).

    check.py --registrar 127.0.0.1:5060 --target 127.0.0.1:5070 [--user NAME] [--domain D]

1. REGISTER sip:NAME@D with Contact <sip:NAME@127.0.0.1:5999> to --registrar: expect 200.
2. INVITE sip:NAME@D to --target: expect 302 whose Contact has sip:NAME@127.0.0.1:5999.
3. INVITE for an AOR never registered to --target: expect 404.
4. REGISTER with Expires: 0 (removes the binding again; --keep skips it): expect 200.

For Kamailio both addresses are the same; for sip-registrard and sip-redirectd they differ.
Prints one line per check and exits 0 when all pass, 1 otherwise. Python 3 stdlib only, UDP only,
every wait bounded (--timeout seconds per request, retransmitted every 0.5 s as RFC 3261 T1).
"""
import argparse
import os
import random
import re
import socket
import sys
import time

CONTACT_HOST = "127.0.0.1:5999"


def parse_addr(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


class Peer:
    """One UDP socket; sends a request, retransmits it, returns the first final response."""

    def __init__(self, timeout):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.local = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.timeout = timeout
        self.seq = 0

    def request(self, addr, method, ruri, from_uri, to_uri, extra=""):
        self.seq += 1
        tag = "%x" % random.getrandbits(32)
        call_id = "chk%d-%x@127.0.0.1" % (self.seq, random.getrandbits(48))
        branch = "z9hG4bK-chk%x" % random.getrandbits(48)
        head = (f"Via: SIP/2.0/UDP {self.local};branch={branch};rport\r\n"
                f"Max-Forwards: 70\r\n"
                f"From: <{from_uri}>;tag={tag}\r\n")
        msg = (f"{method} {ruri} SIP/2.0\r\n{head}"
               f"To: <{to_uri}>\r\n"
               f"Call-ID: {call_id}\r\n"
               f"CSeq: 1 {method}\r\n"
               f"{extra}"
               f"User-Agent: sip-redirect-check\r\n"
               f"Content-Length: 0\r\n\r\n")
        resp = self._transact(addr, msg.encode(), call_id)
        if resp is not None and method == "INVITE" and resp[0] >= 300:
            # RFC 3261 §17.1.1.3: the ACK for a non-2xx final response reuses the branch.
            to_line = next((line for line in resp[1] if line.lower().startswith(("to:", "t:"))),
                           f"To: <{to_uri}>")
            ack = (f"ACK {ruri} SIP/2.0\r\n{head}{to_line}\r\n"
                   f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
            self.sock.sendto(ack.encode(), addr)
        return resp

    def _transact(self, addr, data, call_id):
        deadline = time.monotonic() + self.timeout
        next_send = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None
            if now >= next_send:
                self.sock.sendto(data, addr)
                next_send = now + 0.5
            self.sock.settimeout(max(0.01, min(next_send, deadline) - now))
            try:
                raw = self.sock.recv(65535)
            except socket.timeout:
                continue
            except ConnectionRefusedError:
                time.sleep(0.05)
                continue
            parsed = parse_response(raw)
            if parsed is None or parsed[2] != call_id or parsed[0] < 200:
                continue
            return parsed[0], parsed[1]


def parse_response(raw):
    """Returns (status, header lines, call-id) or None if `raw` is not a SIP response."""
    text = raw.decode("utf-8", "replace")
    head = text.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    m = re.match(r"SIP/2\.0 (\d{3}) ", lines[0] + " ")
    if not m:
        return None
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            headers[-1] += " " + line.strip()  # header folding
        else:
            headers.append(line)
    call_id = ""
    for h in headers:
        name, _, value = h.partition(":")
        if name.strip().lower() in ("call-id", "i"):
            call_id = value.strip()
    return int(m.group(1)), headers, call_id


def contacts(headers):
    out = []
    for h in headers:
        name, _, value = h.partition(":")
        if name.strip().lower() in ("contact", "m"):
            out.append(value.strip())
    return out


def main():
    ap = argparse.ArgumentParser(description="register, redirect and 404 check of a SIP peer")
    ap.add_argument("--registrar", type=parse_addr, required=True, help="HOST:PORT taking REGISTER")
    ap.add_argument("--target", type=parse_addr, required=True, help="HOST:PORT taking INVITE")
    ap.add_argument("--user", default="check%d" % os.getpid(), help="user part of the AOR")
    ap.add_argument("--domain", default="bench.example")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds per request")
    ap.add_argument("--keep", action="store_true", help="leave the binding registered")
    a = ap.parse_args()

    aor = f"sip:{a.user}@{a.domain}"
    contact = f"sip:{a.user}@{CONTACT_HOST}"
    unknown = f"sip:nobody{random.getrandbits(40):x}@{a.domain}"
    peer = Peer(a.timeout)
    failures = 0

    def report(ok, what, got):
        nonlocal failures
        failures += 0 if ok else 1
        print(("ok    " if ok else "FAIL  ") + what + ": " + got)

    def describe(resp):
        if resp is None:
            return f"no final response within {a.timeout:g} s"
        return f"{resp[0]}" + (f", Contact {'; '.join(contacts(resp[1]))}" if contacts(resp[1]) else "")

    r = peer.request(a.registrar, "REGISTER", f"sip:{a.domain}", aor, aor,
                     f"Contact: <{contact}>\r\nExpires: 3600\r\n")
    report(r is not None and r[0] == 200, f"REGISTER {aor} -> {contact} expects 200", describe(r))

    r = peer.request(a.target, "INVITE", aor, f"sip:caller@{a.domain}", aor,
                     f"Contact: <sip:caller@{peer.local}>\r\n")
    ok = r is not None and r[0] == 302 and any(contact in c for c in contacts(r[1]))
    report(ok, f"INVITE {aor} expects 302 with Contact {contact}", describe(r))

    r = peer.request(a.target, "INVITE", unknown, f"sip:caller@{a.domain}", unknown,
                     f"Contact: <sip:caller@{peer.local}>\r\n")
    report(r is not None and r[0] == 404, f"INVITE {unknown} expects 404", describe(r))

    if not a.keep:
        r = peer.request(a.registrar, "REGISTER", f"sip:{a.domain}", aor, aor,
                         f"Contact: <{contact}>\r\nExpires: 0\r\n")
        report(r is not None and r[0] == 200, f"REGISTER {aor} Expires: 0 expects 200", describe(r))

    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
