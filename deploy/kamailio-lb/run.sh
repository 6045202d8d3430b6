#!/usr/bin/env bash
# Runs the load balancer of kamailio.cfg in the foreground (logs on stderr; SIGTERM or Ctrl-C stops
# it, exit status 0), as the current user, with its pid file, RPC sockets and the dispatcher list
# of the redirect instances in one directory. It execs kamailio, so its PID is Kamailio's main
# process.
#
#   deploy/kamailio-lb/run.sh [--listen ADDR:PORT] [--redirect HOST:PORT]... [--dir DIR]
#       [--children N] [--shm MB] [--algorithm 4|8] [--ping-interval S] [--probing-threshold N]
#       [--redirect-timeout MS] [--log-level N] [-- KAMAILIO_ARGS...]
#
# Defaults: --listen 127.0.0.1:5060, --redirect 127.0.0.1:5070, a new directory under
# ${TMPDIR:-/tmp}, --children 2, --shm 128, --algorithm 4 (round-robin), timers as in
# kamailio.cfg (probe every 2 s, out after 2 failed probes, 1000 ms per instance). The RPC
# sockets are DIR/kamailio_ctl (kamcmd -s unix:DIR/kamailio_ctl dispatcher.list) and
# DIR/kamailio_rpc.fifo (RPCFIFOPATH=DIR/kamailio_rpc.fifo kamctl rpc dispatcher.list). KAMAILIO
# names the binary (default: kamailio on PATH). A bad argument gives one line and exit status 2.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CFG=$HERE/kamailio.cfg
KAMAILIO=${KAMAILIO:-kamailio}

die() { printf 'run.sh: %s\n' "$*" >&2; exit 2; }
# shellcheck source=deploy/lib/kamailio-run.sh
source "$HERE/../lib/kamailio-run.sh"

listen=127.0.0.1:5060
redirects=()
dir=
children=2
shm=128
defines=()
while [ $# -gt 0 ]; do
    opt=$1
    [ "$opt" = -- ] && { shift; break; }
    [ $# -ge 2 ] || die "$opt needs a value (see the comment at the top of $0)"
    val=$2
    shift 2
    case $opt in
        --listen) listen=$val ;;
        --redirect) redirects+=("$val") ;;
        --dir) dir=$val ;;
        --children) children=$val ;;
        --shm) shm=$val ;;
        --algorithm) defines+=(-A "DS_ALG=$val") ;;
        --ping-interval) defines+=(-A "PING_INTERVAL=$val") ;;
        --probing-threshold) defines+=(-A "PROBING_THRESHOLD=$val") ;;
        --redirect-timeout) defines+=(-A "REDIRECT_TIMEOUT=$val") ;;
        --log-level) defines+=(-A "LOG_LEVEL=$val") ;;
        *) die "unknown option $opt (see the comment at the top of $0)" ;;
    esac
    case $opt in
        --children|--shm|--algorithm|--ping-interval|--probing-threshold|--redirect-timeout)
            [[ $val =~ ^[0-9]+$ ]] || die "$opt wants a number, got $val" ;;
    esac
done
[ ${#redirects[@]} -gt 0 ] || redirects=(127.0.0.1:5070)

kam_listen "$listen"
kam_check_redirects "${redirects[@]}"
command -v "$KAMAILIO" >/dev/null || die "$KAMAILIO not found (Debian package kamailio)"

dir=$(kam_dir "$dir" sipr-lb)
kam_dispatcher_list "$dir/dispatcher.list" "${redirects[@]}"

exec "$KAMAILIO" -f "$CFG" -DD -E -n "$children" -m "$shm" -M 8 \
    -P "$dir/kamailio.pid" -Y "$dir" -w "$dir" \
    -A "LB_ADDR=$kam_addr" -A "LB_PORT=$kam_port" \
    -A "DISPATCHER_LIST=\"$dir/dispatcher.list\"" \
    -A "CTL_SOCKET=\"unix:$dir/kamailio_ctl\"" -A "RPC_FIFO=\"$dir/kamailio_rpc.fifo\"" \
    "${defines[@]}" "$@"
