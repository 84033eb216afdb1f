# Sourced by tests that read a published directory with an implementation
# that is not provsign's (tests/interop/tlog-tiles, Go's sumdb/tlog): builds
# it into $T/go and sets GOCHECK, or skips the test (exit 77) when Go or
# golang-golang-x-mod-dev is missing. After common.sh's setup_test.
command -v go >/dev/null || { echo "SKIP: go (golang-go) is not installed" >&2; exit 77; }
[ -d /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog ] ||
        { echo "SKIP: golang-golang-x-mod-dev is not installed" >&2; exit 77; }
mkdir -p "$T/go"
(cd "$SRCDIR/tests/interop/tlog-tiles" &&
        GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="$T/go/cache" HOME="$T/go" \
                go build -o "$T/go/tlog-tiles-check" .) 2>"$T/go/err" ||
        fail "building tests/interop/tlog-tiles: $(cat "$T/go/err")"
GOCHECK=$T/go/tlog-tiles-check
