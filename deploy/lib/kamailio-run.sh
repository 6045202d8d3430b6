# Shared by deploy/kamailio-lb/run.sh and deploy/kamailio-proxy/run.sh (sourced, not run): the
# checks of their common options and the dispatcher list of the sip-redirectd instances.
# The caller sets `die` (one line, exit 2) before sourcing.

# kam_listen ADDR:PORT: sets kam_addr and kam_port, or dies.
kam_listen() {
    kam_addr=${1%:*}
    kam_port=${1##*:}
    [[ $kam_addr =~ ^[0-9.]+$ && $kam_port =~ ^[0-9]+$ ]] || die "--listen wants IPv4:PORT, got $1"
}

# kam_check_redirects HOST:PORT...: dies on the first that is not HOST:PORT.
kam_check_redirects() {
    local r
    for r in "$@"; do
        [[ $r =~ ^[A-Za-z0-9.-]+:[0-9]+$ ]] || die "--redirect wants HOST:PORT, got $r"
    done
}

# kam_dir DIR PREFIX: prints the absolute path of DIR, made if missing; with DIR empty, a new
# directory PREFIX.XXXXXX under ${TMPDIR:-/tmp}.
kam_dir() {
    local d=$1
    if [ -z "$d" ]; then
        d=$(mktemp -d "${TMPDIR:-/tmp}/$2.XXXXXX")
    fi
    mkdir -p "$d"
    (cd "$d" && pwd)
}

# kam_dispatcher_list FILE HOST:PORT...: writes dispatcher set 1, one line per redirect instance:
# "setid uri flags priority". The first given gets the highest priority, which is the order
# dispatcher algorithm 8 tries them in.
kam_dispatcher_list() {
    local file=$1 r prio
    shift
    {
        echo "# written by $0: the sip-redirectd instances, set 1"
        prio=$#
        for r in "$@"; do
            echo "1 sip:$r 0 $prio"
            prio=$((prio - 1))
        done
    } >"$file"
}
