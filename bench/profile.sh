#!/bin/bash
# bench/profile.sh: where one sip-redirectd worker spends its CPU under sip-bench (bench/README.md,
# "Issue 16 part 3"). Starts a private redis-server and sip-redirectd on loopback, fills 10,000
# AORs, then either records a perf profile for 4 s (default) or counts the syscalls for 3 s
# (--syscalls) while sip-bench runs at window 64; stops everything it started by its PID.
#
#   bench/profile.sh BUILD_DIR [--sockets N] [--syscalls] [DAEMON FLAGS...]
#   e.g. bench/profile.sh build/release --sockets 1 --cache-ttl 0
#
# Needs perf (Debian linux-perf) and root or perf_event_paranoid <= 1.
set -euo pipefail
B=${1:?usage: bench/profile.sh BUILD_DIR [--sockets N] [--syscalls] [DAEMON FLAGS...]}
shift
SOCKETS=16
MODE=record
FLAGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --sockets) SOCKETS=$2; shift 2 ;;
        --syscalls) MODE=syscalls; shift ;;
        *) FLAGS+=("$1"); shift ;;
    esac
done
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(port); SP=$(port); MP=$(port)
TMP=$(mktemp -d)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --pidfile "$TMP/redis.pid" >/dev/null
DAEMON=
cleanup() {
    [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
    [ -f "$TMP/redis.pid" ] && kill "$(cat "$TMP/redis.pid")" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
sleep 0.3
"$B/src/app/sip-redirectd" --listen "127.0.0.1:$SP" --redis "redis://127.0.0.1:$RP" \
    --metrics "127.0.0.1:$MP" --domain bench.example --log-level error --workers 1 \
    ${FLAGS[@]+"${FLAGS[@]}"} &
DAEMON=$!
sleep 0.5
BENCH=("$B/bench/sip-bench" --target "127.0.0.1:$SP" --aors 10000 --window 64 --sockets "$SOCKETS")
"${BENCH[@]}" --populate redis --redis "redis://127.0.0.1:$RP" --duration 2 >/dev/null
if [ "$MODE" = record ]; then
    perf record -F 2000 -g -p "$DAEMON" -o "$TMP/perf.data" -- sleep 4 >/dev/null 2>&1 &
    P=$!
    "${BENCH[@]}" --no-populate --duration 5 --pid "$DAEMON"
    wait $P
    perf report -i "$TMP/perf.data" --no-children --percent-limit 1.0 --stdio -g none 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -40
else
    EVENTS=syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_epoll_wait
    EVENTS+=,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_epoll_ctl
    EVENTS+=,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvmsg
    perf stat -e "$EVENTS" -p "$DAEMON" -o "$TMP/stat.txt" -- sleep 3 &
    P=$!
    "${BENCH[@]}" --no-populate --duration 4 --pid "$DAEMON" --json >"$TMP/bench.json"
    wait $P
    /usr/bin/python3 - "$TMP" <<'PY'
import json, re, sys
d = sys.argv[1]
rate = json.loads(open(f"{d}/bench.json").read().strip().splitlines()[-1])["responses_per_s"]
total = 0.0
for line in open(f"{d}/stat.txt"):
    m = re.match(r"\s*([\d,]+)\s+syscalls:sys_enter_(\w+)", line)
    if m:
        n = int(m.group(1).replace(",", "")) / 3.0 / rate
        total += n
        print(f"{m.group(2)}: {n:.3f} per 302")
print(f"total: {total:.3f} syscalls per 302 at {rate:,.0f} 302/s")
PY
fi
