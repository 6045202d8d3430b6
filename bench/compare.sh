#!/usr/bin/env bash
# The side-by-side benchmark: sip-redirectd (each configuration of compare.py's CONFIGS at 1 and 2
# workers) against Kamailio (in memory and on Redis) and the null responder, from 16 client
# sockets (many sources) and from 1 (a load balancer), and sip-registrard against Kamailio's
# registrar on Redis, in one run on this machine. Installs what is missing (Kamailio included),
# builds the release tree if needed, then runs bench/compare.py, which prints markdown tables.
# Loopback only; stops what it started by PID.
#
#   bench/compare.sh            the full run (about 10 minutes on 2 cores)
#   bench/compare.sh --smoke    under a minute; fails only if a peer answers wrongly
#   bench/compare.sh --help     every option (--aors, --duration, --reps, --windows, --threads,
#                               --sockets, --workers, --config)
#
# Environment: BUILD_ROOT (default ./build) holds build/release.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD_ROOT:-$ROOT/build}/release

# shellcheck source=tools/packages.sh
source "$ROOT/tools/packages.sh"
sipr_install_packages

if [ ! -f "$BUILD/build.ninja" ]; then
    meson setup "$BUILD" "$ROOT" --buildtype=release >/dev/null
fi
ninja -C "$BUILD" src/app/sip-redirectd src/app/sip-registrard bench/sip-bench bench/null-responder >/dev/null

export SIPR_BUILD_DIR=$BUILD PYTHONDONTWRITEBYTECODE=1
# Debian's python3-redis (tests/lib/sipr_test) is importable by /usr/bin/python3 only.
exec /usr/bin/python3 "$ROOT/bench/compare.py" "$@"
