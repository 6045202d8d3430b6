#!/usr/bin/env bash
# Replays each fuzz target's committed corpus, then fuzzes it for a bounded time.
#
#   tests/fuzz/run.sh BUILD_DIR [SECONDS]
#
# BUILD_DIR is a meson build configured with clang and -Dfuzz=enabled, for example
#   CXX=clang++ meson setup build-fuzz -Dfuzz=enabled -Db_sanitize=address,undefined -Db_lundef=false
# SECONDS (default $FUZZ_SECONDS, else 30) is the fuzzing time per target. Prints one line per
# target: "fuzz <target>: ok (N execs)" or "fuzz <target>: FAILED (...)" followed by the tail of its
# log. New inputs go to a temporary directory, never into the committed corpus; crash inputs are
# kept as tests/fuzz/crashes/<target>-crash-<sha1>. Logs: BUILD_DIR/fuzz-logs/<target>.log.
# Exit status: 0 all targets passed, 1 a target failed, 2 usage error or targets not built.
set -u -o pipefail

usage() {
    echo "usage: $0 BUILD_DIR [SECONDS]" >&2
    exit 2
}
[[ $# -ge 1 && $# -le 2 ]] || usage
build_dir=$(cd "$1" 2>/dev/null && pwd) || {
    echo "fuzz: build directory '$1' not found" >&2
    exit 2
}
seconds=${2:-${FUZZ_SECONDS:-30}}
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || usage

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
crash_dir=$fuzz_dir/crashes
log_dir=$build_dir/fuzz-logs
targets=(fuzz_message fuzz_uri fuzz_aor fuzz_redirect fuzz_registrar fuzz_framer)
mkdir -p "$crash_dir" "$log_dir"

# Bring the targets up to date when ninja is at hand; a build that was never configured with
# -Dfuzz=enabled has no such targets and is reported below.
if [[ -f $build_dir/build.ninja ]] && command -v ninja >/dev/null 2>&1; then
    if ! ninja -C "$build_dir" "${targets[@]/#/tests/fuzz/}" >"$log_dir/build.log" 2>&1; then
        if grep -q "unknown target" "$log_dir/build.log"; then
            echo "fuzz: $build_dir has no fuzz targets; configure it with CXX=clang++ and -Dfuzz=enabled" >&2
            exit 2
        fi
        echo "fuzz: build failed" >&2
        tail -n 30 "$log_dir/build.log" >&2
        exit 1
    fi
fi

# UBSan only reports unless told to stop; libFuzzer must see every finding as a crash.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

work=$(mktemp -d "$build_dir/fuzz-work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Prints the end of a log, indented and without libFuzzer's hex dump of the input, for a failure
# report; long lines are cut.
show_tail() {
    grep -v '^0x' "$1" | tail -n 40 | cut -c1-300 | sed 's/^/    /'
}

failed=0
for target in "${targets[@]}"; do
    exe=$build_dir/tests/fuzz/$target
    corpus=$fuzz_dir/corpus/${target#fuzz_}
    log=$log_dir/$target.log
    if [[ ! -x $exe ]]; then
        echo "fuzz $target: FAILED (not built: $exe)"
        failed=1
        continue
    fi
    mkdir -p "$corpus"

    # 1. Replay: with a directory and -runs=0 libFuzzer runs every file once and stops.
    timeout -k 10 300 "$exe" -runs=0 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$crash_dir/$target-" "$corpus" >"$log" 2>&1
    rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "fuzz $target: FAILED (corpus replay, exit $rc; log $log)"
        show_tail "$log"
        failed=1
        continue
    fi

    # 2. Fuzz: new inputs land in the scratch directory (the first one named), the committed
    # corpus only seeds it. The outer timeout bounds a hung target.
    scratch=$work/$target
    mkdir -p "$scratch"
    timeout -k 10 $((seconds + 120)) "$exe" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
        -rss_limit_mb=2048 -dict="$fuzz_dir/sip.dict" -print_final_stats=1 \
        -artifact_prefix="$crash_dir/$target-" "$scratch" "$corpus" >>"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [[ $rc -ne 0 ]]; then
        if [[ $rc -eq 124 || $rc -eq 137 ]]; then
            why="hung: killed after $((seconds + 120)) s"
        else
            why="exit $rc"
        fi
        artifacts=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tr '\n' ' ')
        echo "fuzz $target: FAILED ($why; ${artifacts:+input ${artifacts% }; }log $log)"
        show_tail "$log"
        failed=1
        continue
    fi
    echo "fuzz $target: ok (${execs:-?} execs)"
done
exit $failed
