# Sourced by tests/run.sh and deploy/local/up.sh: the Debian 12 packages the project needs, and an
# install step that runs apt-get only when one is missing.
SIPR_PACKAGES=(
    g++ pkg-config meson ninja-build python3
    libuv1-dev libhiredis-dev prometheus-cpp-dev doctest-dev libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
    libssl-dev
    clang libclang-rt-14-dev clang-format clang-tidy
    redis-server sip-tester curl iproute2
    kamailio kamailio-redis-modules
    prometheus python3-yaml python3-pytest python3-redis
    baresip linphone-cli
    podman runc podman-compose mmdebstrap netavark aardvark-dns
)

sipr_install_packages() {
    local missing=()
    local p
    for p in "${SIPR_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "== installing: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; return 1; }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q >/dev/null
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}
