"""The location data as Redis holds it (DESIGN §6), for tests that read it back.

The packed binding format is defined by include/sipr/location/binding.h (pack_binding /
unpack_binding there); this decoder repeats it and must follow any change to it. Tests write
bindings through `sip-locctl bind` where its options suffice; pack_binding() is for the cases it
cannot express (an expiry in the past or within the next second, an instance, a chosen CSeq).
test_registrar.py's test_python_binding_codec_matches_the_cpp_one checks both directions against
the C++ code (sip-locctl bind and show), so the two cannot drift apart unnoticed.
"""
from __future__ import annotations

from dataclasses import dataclass


def location_key(aor: str) -> str:
    """The Redis key of an AOR's bindings (DESIGN §6)."""
    return f"sipr:loc:{{{aor}}}"


@dataclass
class StoredBinding:
    """One packed binding (include/sipr/location/binding.h, version 1)."""
    expires_at_ms: int
    updated_at_ms: int
    cseq: int
    call_id: str
    contact: str
    q: int  # thousandths
    path: str
    received: str
    user_agent: str
    instance: str
    reg_id: int | None


def unpack_binding(packed: str) -> StoredBinding:
    parts = packed.split("\x1f")
    assert len(parts) == 12 and parts[0] == "1", f"not a version-1 packed binding: {packed!r}"
    return StoredBinding(int(parts[1]), int(parts[2]), int(parts[3]), parts[4], parts[5],
                         int(parts[6]), parts[7], parts[8], parts[9], parts[10],
                         int(parts[11]) if parts[11] != "" else None)


def pack_binding(b: StoredBinding) -> str:
    """The packed form of `b` (to seed Redis directly)."""
    return "\x1f".join(["1", str(b.expires_at_ms), str(b.updated_at_ms), str(b.cseq), b.call_id,
                        b.contact, str(b.q), b.path, b.received, b.user_agent, b.instance,
                        "" if b.reg_id is None else str(b.reg_id)])


