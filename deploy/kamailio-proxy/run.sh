#!/usr/bin/env bash
# Runs the Kamailio proxy of kamailio.cfg in the foreground (logs on stderr; SIGTERM or Ctrl-C stops
# it, exit status 0), as the current user, with its pid file, runtime files and the dispatcher list
# of the redirect instances in one directory. It execs kamailio, so its PID is Kamailio's main
# process.
#
#   deploy/kamailio-proxy/run.sh [--listen ADDR:PORT] [--redirect HOST:PORT]... [--domain D]...
#       [--dir DIR] [--children N] [--shm MB] [--algorithm 4|8] [--ping-interval S]
#       [--redirect-timeout MS] [--branch-timeout MS] [--ring-timeout MS] [--log-level N]
#       [-- KAMAILIO_ARGS...]
#
# Defaults: --listen 127.0.0.1:5080, --redirect 127.0.0.1:5070, --domain example.com, --children 2,
# --shm 256 (shared memory for transactions: each call holds a few kB for the seconds it lasts
# plus tm's 5 s wait; Debian's 64 MB runs out at a few hundred calls/s),
# --algorithm 4 (round-robin over the redirect instances; 8: in the order given, the first is
# primary), a new directory under ${TMPDIR:-/tmp}. Timers as in kamailio.cfg. KAMAILIO names the
# binary (default: kamailio on PATH).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CFG=$HERE/kamailio.cfg
KAMAILIO=${KAMAILIO:-kamailio}

die() { printf 'run.sh: %s\n' "$*" >&2; exit 2; }
# shellcheck source=deploy/lib/kamailio-run.sh
source "$HERE/../lib/kamailio-run.sh"

listen=127.0.0.1:5080
redirects=()
domains=()
dir=
children=2
shm=256
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
        --domain) domains+=("$val") ;;
        --dir) dir=$val ;;
        --children) children=$val ;;
        --shm) shm=$val ;;
        --algorithm) defines+=(-A "DS_ALG=$val") ;;
        --ping-interval) defines+=(-A "PING_INTERVAL=$val") ;;
        --redirect-timeout) defines+=(-A "REDIRECT_TIMEOUT=$val") ;;
        --branch-timeout) defines+=(-A "BRANCH_TIMEOUT=$val") ;;
        --ring-timeout) defines+=(-A "RING_TIMEOUT=$val") ;;
        --log-level) defines+=(-A "LOG_LEVEL=$val") ;;
        *) die "unknown option $opt (see the comment at the top of $0)" ;;
    esac
done
[ ${#redirects[@]} -gt 0 ] || redirects=(127.0.0.1:5070)
[ ${#domains[@]} -gt 0 ] || domains=(example.com)

kam_listen "$listen"
kam_check_redirects "${redirects[@]}"
# The served domains become one anchored extended regular expression, dots taken literally.
re=
for d in "${domains[@]}"; do
    [[ $d =~ ^[A-Za-z0-9.-]+$ ]] || die "--domain wants a domain name, got $d"
    re+="${re:+|}${d//./[.]}"
done

dir=$(kam_dir "$dir" sipr-proxy)
kam_dispatcher_list "$dir/dispatcher.list" "${redirects[@]}"

exec "$KAMAILIO" -f "$CFG" -DD -E -n "$children" -m "$shm" -M 8 \
    -P "$dir/kamailio.pid" -Y "$dir" -w "$dir" \
    -A "PROXY_ADDR=$kam_addr" -A "PROXY_PORT=$kam_port" \
    -A "SERVED_DOMAINS=\"^($re)\$\"" -A "DISPATCHER_LIST=\"$dir/dispatcher.list\"" \
    "${defines[@]}" "$@"
