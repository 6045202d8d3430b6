#!/usr/bin/env bash
# The README's first command: on a fresh Debian 12 machine, installs what is missing, builds, and
# starts a private redis-server, sip-registrard (udp 127.0.0.1:5060) and sip-redirectd
# (udp 127.0.0.1:5070) on loopback; prints how to try it; stays in the foreground. Ctrl-C stops
# everything it started. Running it again while one runs says so and changes nothing.
#
#   deploy/local/up.sh [--with-proxy]
#
# --with-proxy also starts the carrier's proxy of deploy/kamailio-proxy (Kamailio, udp
# 127.0.0.1:5080) in front of sip-redirectd and prints how to place a whole call through it.
#
# Environment: SIPR_REGISTRAR_PORT (5060), SIPR_REDIRECT_PORT (5070), SIPR_PROXY_PORT (5080),
# SIPR_REDIS_PORT (a free port from 6390), SIPR_LOCAL_DIR (state, default
# ${TMPDIR:-/tmp}/sip-redirect-local).
set -euo pipefail

WITH_PROXY=0
for arg in "$@"; do
    case $arg in
        --with-proxy) WITH_PROXY=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) printf 'up.sh: unknown argument %s (try --help)\n' "$arg" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$ROOT/build/release
STATE=${SIPR_LOCAL_DIR:-${TMPDIR:-/tmp}/sip-redirect-local}
REG_PORT=${SIPR_REGISTRAR_PORT:-5060}
RED_PORT=${SIPR_REDIRECT_PORT:-5070}
PROXY_PORT=${SIPR_PROXY_PORT:-5080}
REG_METRICS=${SIPR_REGISTRAR_METRICS_PORT:-9060}
RED_METRICS=${SIPR_REDIRECT_METRICS_PORT:-9070}
mkdir -p "$STATE"

say() { printf '%s\n' "$*"; }

# Another up.sh of ours still running? Then leave it alone.
if [ -f "$STATE/up.pid" ] && kill -0 "$(cat "$STATE/up.pid")" 2>/dev/null; then
    say "sip-redirect is already running here (up.sh pid $(cat "$STATE/up.pid")); stop it with Ctrl-C in its terminal first."
    exit 1
fi
# Leftovers of a run that was killed without cleaning up: stop them by their recorded PIDs.
for f in "$STATE"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null && grep -qE 'redis-server|sip-registrard|sip-redirectd|kamailio' "/proc/$pid/cmdline" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
done
echo $$ >"$STATE/up.pid"

# shellcheck source=../../tools/packages.sh
source "$ROOT/tools/packages.sh"
sipr_install_packages

say "== building (release) into $BUILD"
if [ ! -f "$BUILD/build.ninja" ]; then
    meson setup "$BUILD" "$ROOT" --buildtype=release >"$STATE/build.log" 2>&1 || { tail -n 30 "$STATE/build.log"; exit 1; }
fi
ninja -C "$BUILD" src/app/sip-registrard src/app/sip-redirectd src/app/sip-locctl >>"$STATE/build.log" 2>&1 || { tail -n 30 "$STATE/build.log"; exit 1; }
BIN=$BUILD/src/app

port_busy() { # port_busy udp|tcp PORT
    local flag=-u
    [ "$1" = tcp ] && flag=-t
    ss -H -l -n "$flag" "sport = :$2" 2>/dev/null | grep -q .
}
UDP_PORTS=("$REG_PORT" "$RED_PORT")
[ "$WITH_PROXY" = 1 ] && UDP_PORTS+=("$PROXY_PORT")
for p in "${UDP_PORTS[@]}"; do
    if port_busy udp "$p"; then say "udp port $p is taken by another program (ss -lunp 'sport = :$p'); set SIPR_REGISTRAR_PORT / SIPR_REDIRECT_PORT / SIPR_PROXY_PORT"; exit 1; fi
done
for p in "$REG_METRICS" "$RED_METRICS"; do
    if port_busy tcp "$p"; then say "tcp port $p is taken (ss -ltnp 'sport = :$p'); set SIPR_REGISTRAR_METRICS_PORT / SIPR_REDIRECT_METRICS_PORT"; exit 1; fi
done
REDIS_PORT=${SIPR_REDIS_PORT:-}
if [ -z "$REDIS_PORT" ]; then
    REDIS_PORT=6390
    while port_busy tcp "$REDIS_PORT"; do REDIS_PORT=$((REDIS_PORT + 1)); done
fi

PIDS=()
cleanup() {
    trap - INT TERM EXIT
    say ""
    say "== stopping"
    local i kids
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            # Kamailio's main process now and then waits for ever for a child that missed the
            # SIGTERM: send it again to the children; whatever is left goes with SIGKILL.
            kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
            # shellcheck disable=SC2086
            [ -z "$kids" ] || kill $kids 2>/dev/null || true
            for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            # shellcheck disable=SC2086
            kill -9 "$pid" $kids 2>/dev/null || true
        fi
    done
    rm -f "$STATE"/*.pid
    say "stopped: redis-server, sip-registrard, sip-redirectd${PROXY_NOTE:-}"
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT

start() { # start NAME CMD...: background, log to $STATE/NAME.log, pid to $STATE/NAME.pid
    local name=$1
    shift
    "$@" >"$STATE/$name.log" 2>&1 &
    PIDS+=($!)
    echo $! >"$STATE/$name.pid"
}

mkdir -p "$STATE/redis"
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$STATE/redis" --save "" --appendonly no
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
REDIS=redis://127.0.0.1:$REDIS_PORT
export SIPR_SECRET=${SIPR_SECRET:-local-demo-secret}

start registrar "$BIN/sip-registrard" --listen "127.0.0.1:$REG_PORT" --redis "$REDIS" --metrics "127.0.0.1:$REG_METRICS" --workers 2
# --drain-seconds 0: no balancer probes this one, so Ctrl-C need not wait for one to notice.
start redirect "$BIN/sip-redirectd" --listen "127.0.0.1:$RED_PORT" --redis "$REDIS" --metrics "127.0.0.1:$RED_METRICS" --workers 2 --drain-seconds 0

ready=0
for _ in $(seq 50); do
    if "$BIN/sip-locctl" ping "127.0.0.1:$REG_PORT" --timeout 500 >/dev/null 2>&1 &&
        "$BIN/sip-locctl" ping "127.0.0.1:$RED_PORT" --timeout 500 >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.2
done
if [ "$ready" != 1 ]; then
    say "the servers did not come up; their logs:"
    tail -n 5 "$STATE/registrar.log" "$STATE/redirect.log"
    exit 1
fi

if [ "$WITH_PROXY" = 1 ]; then
    # run.sh execs Kamailio in the foreground: the recorded PID is Kamailio's main process, which
    # stops its children when it gets SIGTERM.
    start proxy "$ROOT/deploy/kamailio-proxy/run.sh" --listen "127.0.0.1:$PROXY_PORT" \
        --redirect "127.0.0.1:$RED_PORT" --domain example.com --dir "$STATE/proxy"
    PROXY_NOTE=", kamailio proxy"
    ready=0
    for _ in $(seq 50); do
        if "$BIN/sip-locctl" ping "127.0.0.1:$PROXY_PORT" --timeout 500 >/dev/null 2>&1; then
            ready=1
            break
        fi
        sleep 0.2
    done
    if [ "$ready" != 1 ]; then
        say "the Kamailio proxy did not come up; its log:"
        tail -n 15 "$STATE/proxy.log"
        exit 1
    fi
fi

cat <<TXT

sip-redirect is running on loopback:
  redis-server     127.0.0.1:$REDIS_PORT   (private, data in $STATE/redis)
  sip-registrard   udp 127.0.0.1:$REG_PORT   metrics http://127.0.0.1:$REG_METRICS/metrics
  sip-redirectd    udp 127.0.0.1:$RED_PORT   metrics http://127.0.0.1:$RED_METRICS/metrics
  logs             $STATE/*.log

Try it (in another terminal):
  $BIN/sip-locctl register sip:alice@example.com sip:alice@127.0.0.1:5099 --registrar 127.0.0.1:$REG_PORT
  $BIN/sip-locctl invite sip:alice@example.com --target 127.0.0.1:$RED_PORT     # -> 302, Contact: <sip:alice@127.0.0.1:5099>
  $BIN/sip-locctl --redis $REDIS show sip:alice@example.com
  curl -s http://127.0.0.1:$RED_METRICS/metrics | grep 'sipr_responses_total{code="302"}'

Or with SIPp as the user agent and the caller:
  sipp -sf $ROOT/deploy/local/register.xml -s alice -m 1 -p 5099 -nostdin 127.0.0.1:$REG_PORT
  sipp -sf $ROOT/deploy/local/invite.xml -s alice -m 1 -p 5098 -nostdin -trace_logs 127.0.0.1:$RED_PORT && cat invite_*_logs.log
TXT
if [ "$WITH_PROXY" = 1 ]; then
    cat <<TXT

A whole call through the Kamailio proxy (udp 127.0.0.1:$PROXY_PORT, log $STATE/proxy.log): it
asks sip-redirectd, follows the 302 to alice's contact and record-routes the dialog.
  # terminal 2: alice registers at 127.0.0.1:5099 and answers there (q quits)
  sipp -sf $ROOT/deploy/local/register.xml -s alice -m 1 -p 5099 -nostdin 127.0.0.1:$REG_PORT
  sipp -sf $ROOT/deploy/local/answer.xml -s alice -p 5099 -trace_logs
  # terminal 3: 10 calls to alice through the proxy, INVITE 180 200 ACK BYE 200 each
  sipp -sf $ROOT/deploy/local/call.xml -s alice -m 10 -r 5 -d 100 -p 5098 -nostdin 127.0.0.1:$PROXY_PORT
  curl -s http://127.0.0.1:$RED_METRICS/metrics | grep 'sipr_responses_total{code="302"}'   # one per call
TXT
fi
say ""
say "Ctrl-C stops everything started here."

# Stay in the foreground until Ctrl-C, or until one of ours dies.
while :; do
    for pid in "${PIDS[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "a process of ours (pid $pid) exited; see $STATE/*.log"
            exit 1
        fi
    done
    sleep 1
done
