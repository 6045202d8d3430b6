#!/usr/bin/python3
"""The registrar's worst reflection (issue 14 defect 1): the largest answer a spoofable source can
get for the smallest request. Seeds an AOR with --max-contacts (10) bindings whose contacts are as
long as a REGISTER can carry (~6 KB each), then sends the smallest valid fetch (REGISTER without
Contact, no credentials: --auth none) and prints request bytes, answer bytes and their ratio.
Loopback only; stops what it starts.

    SIPR_BUILD_DIR=build/release /usr/bin/python3 bench/reflection.py [extra sip-registrard flags...]
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "lib"))
from sipr_test import bindings, processes, redis_servers, sip  # noqa: E402

DOMAIN = "example.com"
AOR = f"sip:victim@{DOMAIN}"


def main() -> int:
    with redis_servers.RedisServer() as redis:
        now = redis_servers.time_ms(redis.client)
        for i in range(10):
            contact = f"sip:{'x' * 6000}-{i}@192.0.2.{i + 1}:5060"
            b = bindings.StoredBinding(expires_at_ms=now + 600_000, updated_at_ms=now, cseq=1,
                                call_id=f"seed-{i}", contact=contact, q=1000, path="",
                                received="192.0.2.250:5060", user_agent="seed", instance="",
                                reg_id=None)
            redis.client.hset(bindings.location_key(AOR), contact, bindings.pack_binding(b))
        with processes.ServiceDaemon("sip-registrard", redis.url, ["--domain", DOMAIN, *sys.argv[1:]],
                             workers=1) as rg, sip.SipUdp(rg.port) as ua:
            branch = f"z9hG4bK{random.getrandbits(32):08x}"
            data = (f"REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {ua.local};branch={branch}"
                    f"\r\nFrom: <{AOR}>;tag=1\r\nTo: <{AOR}>\r\nCall-ID: {random.getrandbits(32):08x}"
                    f"\r\nCSeq: 1 REGISTER\r\n\r\n").encode()
            r = ua.answer_raw(data, branch)
            print(f"request {len(data)} bytes -> {r.status} of {len(r.raw)} bytes "
                  f"({len(r.contacts)} contacts): {len(r.raw) / len(data):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
