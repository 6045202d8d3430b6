#!/usr/bin/env bash
# Starts, lists and stops one Kamailio benchmark peer (bench/peers/README.md).
#
#   kamailio.sh start mem|redis --listen 127.0.0.1:PORT --state DIR [--redis-port N] [--children 2]
#                               [--shm MB] [--pkg MB] [--timer-interval S] [--timeout S]
#       Starts Kamailio in the background (-DD: the started process is the main process), waits
#       until it answers an OPTIONS, prints the main PID. Runtime dir, pid file and log (kamailio.log)
#       go to DIR. redis: usrloc DB-only on the redis-server at 127.0.0.1:N (must be running).
#   kamailio.sh pids --state DIR     every PID of the instance (main first, then its descendants)
#   kamailio.sh stop --state DIR     TERM, KILL what is left after --timeout S (default 5), wait
#
# One line on stderr and a non-zero exit on any failure. Only the PIDs recorded in DIR are
# signalled: other Kamailio instances on the machine are never touched.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { echo "kamailio.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

cmd="${1:-}"; [[ -n "$cmd" ]] || usage; shift
kind=""
if [[ "$cmd" == start ]]; then kind="${1:-}"; shift || true; fi
listen="" state="" redis_port="" children=2 shm=256 pkg=16 timer_interval=60 timeout=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --listen) listen="${2:?}"; shift 2 ;;
        --state) state="${2:?}"; shift 2 ;;
        --redis-port) redis_port="${2:?}"; shift 2 ;;
        --children) children="${2:?}"; shift 2 ;;
        --shm) shm="${2:?}"; shift 2 ;;
        --pkg) pkg="${2:?}"; shift 2 ;;
        --timer-interval) timer_interval="${2:?}"; shift 2 ;;
        --timeout) timeout="${2:?}"; shift 2 ;;
        -h|--help) usage ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ -n "$state" ]] || die "--state DIR is required"

alive() { [[ "$1" =~ ^[0-9]+$ && -d "/proc/$1" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

main_pid() {
    [[ -s "$state/main.pid" ]] || die "no instance recorded in $state (main.pid missing)"
    cat "$state/main.pid"
}

# Main PID, then every descendant (breadth first). Kamailio forks all its workers (UDP receivers,
# timers, the slow timer) from the main process; children's CPU time only reaches the parent's
# /proc/PID/stat when they exit, so each is listed for per-PID measurement.
list_pids() {
    local main="$1"
    alive "$main" || return 0
    echo "$main"
    ps -e -o pid=,ppid= | awk -v root="$main" '
        { parent[$1] = $2; order[NR] = $1 }
        END {
            keep[root] = 1
            do {
                grew = 0
                for (i = 1; i <= NR; i++) {
                    p = order[i]
                    if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grew = 1; print p }
                }
            } while (grew)
        }'
}

# Sends an OPTIONS to host:port every 200 ms until a SIP response comes back (0), `secs` pass (1)
# or process `pid` is gone (2).
probe() {
    python3 - "$1" "$2" "$3" "$4" <<'EOF'
import socket, sys, time
host, port, secs, pid = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]

def gone():
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except OSError:
        return True

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
lport = s.getsockname()[1]
deadline = time.monotonic() + secs
n = 0
while time.monotonic() < deadline:
    if gone():
        sys.exit(2)
    n += 1
    msg = (f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK-probe{n};rport\r\n"
           f"Max-Forwards: 70\r\nFrom: <sip:probe@{host}>;tag=p{n}\r\nTo: <sip:{host}:{port}>\r\n"
           f"Call-ID: probe{n}@127.0.0.1\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n")
    s.sendto(msg.encode(), (host, port))
    s.settimeout(0.2)
    try:
        data = s.recv(65535)
        if data.startswith(b"SIP/2.0 "):
            sys.exit(0)
    except (socket.timeout, ConnectionRefusedError):
        time.sleep(0.05)
sys.exit(1)
EOF
}

do_stop() {
    local main bound="${timeout:-5}" pids p deadline
    main="$(main_pid)"
    mapfile -t pids < <(list_pids "$main")
    if [[ ${#pids[@]} -eq 0 ]]; then rm -f "$state/main.pid"; return 0; fi
    kill -TERM "$main" 2>/dev/null || true
    deadline=$((SECONDS + bound))
    while ((SECONDS < deadline)); do
        local left=0
        for p in "${pids[@]}"; do alive "$p" && left=1; done
        ((left)) || break
        sleep 0.1
    done
    for p in "${pids[@]}"; do
        if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    done
    deadline=$((SECONDS + 5))
    for p in "${pids[@]}"; do
        while alive "$p" && ((SECONDS < deadline)); do sleep 0.05; done
        alive "$p" && die "PID $p still alive after SIGKILL"
    done
    rm -f "$state/main.pid"
}

do_start() {
    local cfg defines=() host port main bound="${timeout:-10}"
    case "$kind" in
        mem) cfg="$here/kamailio-mem.cfg" ;;
        redis)
            cfg="$here/kamailio-redis.cfg"
            [[ -n "$redis_port" ]] || die "start redis needs --redis-port N"
            [[ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" == PONG ]] \
                || die "no redis-server answers on 127.0.0.1:$redis_port (start it first)"
            defines=(-A "DBURL=\"redis://127.0.0.1:$redis_port/0\"")
            ;;
        *) die "start needs mem or redis" ;;
    esac
    [[ "$timer_interval" =~ ^[0-9]+$ ]] || die "--timer-interval must be seconds, got '$timer_interval'"
    defines+=(-A "UL_TIMER_INTERVAL=$timer_interval")
    [[ "$listen" =~ ^([0-9.]+):([0-9]+)$ ]] || die "--listen must be IPV4:PORT, got '$listen'"
    host="${BASH_REMATCH[1]}" port="${BASH_REMATCH[2]}"
    # Kamailio binds with SO_REUSEADDR, so a second instance on a busy port would start and the
    # probe could be answered by the other one: refuse a port someone already holds.
    python3 -c 'import socket,sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind((sys.argv[1], int(sys.argv[2])))' \
        "$host" "$port" 2>/dev/null || die "UDP $listen is already in use"
    mkdir -p "$state"
    state="$(cd "$state" && pwd)"
    if [[ -s "$state/main.pid" ]] && alive "$(cat "$state/main.pid")"; then
        die "an instance is already running from $state (PID $(cat "$state/main.pid"))"
    fi
    # With TZ unset glibc stats /etc/localtime on every mktime(), and usrloc/db_redis convert an
    # expiry twice per look-up: the same zone, read once.
    export TZ="${TZ:-:/etc/localtime}"
    # -DD: stay in the foreground (the PID we start is Kamailio's main process); -E: log to stderr.
    kamailio -f "$cfg" "${defines[@]}" -DD -E -x tlsf -m "$shm" -M "$pkg" -n "$children" \
        -l "udp:$host:$port" -Y "$state" -P "$state/kamailio.pid" -w "$state" \
        </dev/null >"$state/kamailio.log" 2>&1 &
    main=$!
    echo "$main" >"$state/main.pid"
    if ! probe "$host" "$port" "$bound" "$main" || ! alive "$main"; then
        local why="no answer to OPTIONS within ${bound}s"
        alive "$main" || why="it exited"
        do_stop 2>/dev/null || true
        die "Kamailio ($kind) did not come up on $listen: $why; see $state/kamailio.log"
    fi
    echo "$main"
}

case "$cmd" in
    start) do_start ;;
    pids) main="$(main_pid)"; list_pids "$main" ;;
    stop) do_stop ;;
    *) usage ;;
esac
