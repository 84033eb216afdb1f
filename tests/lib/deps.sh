# The Debian 12 packages provsign builds, tests and runs with. Sourced by
# tests/quickstart and tests/run-suite; installs only what is missing.
PROVSIGN_DEPS=(
        meson ninja-build pkg-config gcc clang libclang-rt-14-dev
        libp11-dev libssl-dev openssl libprotobuf-c-dev protobuf-c-compiler
        libsystemd-dev systemd libinih-dev libjansson-dev libcmocka-dev libsqlite3-dev
        softhsm2 opensc p11-kit p11-kit-modules util-linux procps python3 jq
        strace                                        # test-fdatasync: fdatasync fault injection
        openssh-client                                # tests/bench/run: ssh-agent, ssh-add
        dpkg-dev debhelper lintian bash-completion   # packaging/build-deb, test-package
        prometheus python3-prometheus-client         # test-metrics: promtool, the OpenMetrics parser
        golang-go golang-golang-x-mod-dev             # tests/interop/tlog-tiles (test-tiles)
)

install_deps() {
        local missing=() p
        for p in "${PROVSIGN_DEPS[@]}"; do
                dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
        done
        # Node.js and npm for the sigstore verifier (tests/interop/sigstore):
        # the machine's Node 20 when there is one (its npm is in its nodejs
        # package), Debian's otherwise.
        command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
        [ ${#missing[@]} = 0 ] && return 0
        echo "installing: ${missing[*]}"
        local sudo=
        [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq &&
                DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
