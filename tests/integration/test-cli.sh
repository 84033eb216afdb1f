#!/bin/bash
# The CLI contract: --help on every verb, each exit code, errors that name
# the problem; and the libprovsign example program against a real agent.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent
d=$(random_digest)

for v in "" "sign" "key" "key pubkey" "key list" "status"; do
        # shellcheck disable=SC2086
        expect_exit 0 "provsign $v --help" "$PROVSIGN_CLI" $v --help
        check "provsign $v --help prints usage on stdout" grep -q "^Usage: provsign" "$T/out"
done

# 0
expect_exit 0 "exit 0: success" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d"
# 2: one line naming the problem, not the whole usage
expect_exit 2 "exit 2: bad digest" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:12"
check "usage error names the problem in at most two lines" test "$(wc -l < "$T/err")" -le 2
check "usage error mentions the digest" grep -qi "digest" "$T/err"
expect_exit 2 "exit 2: unknown option" cli "$RUNNER_UID" sign --frobnicate
expect_exit 2 "exit 2: missing --digest" cli "$RUNNER_UID" sign --principal ci-release
expect_exit 2 "exit 2: both --principal and --key" cli "$RUNNER_UID" key pubkey --principal ci-release --key "$(printf 'a%.0s' $(seq 64))"
# 3: status name first on stderr
expect_exit 3 "exit 3: refused" cli "$STRANGER_UID" sign --principal ci-release --digest "sha256:$d"
expect_stderr_prefix "PERMISSION_DENIED: " "exit 3 puts the status name first"
# 4
expect_exit 4 "exit 4: unreachable" "$PROVSIGN_CLI" --socket "$T/run/none.sock" status
# 5: a malformed reply from something that is not an agent
python3 - "$T/fake.sock" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(1)
c, _ = s.accept(); c.recv(65536)
c.sendall(b"\x00\x00\x00\x05\xff\xff\xff\xff\xff"); c.close()
PY
fake=$!
check "the fake agent listens" wait_for 60 test -S "$T/fake.sock"
expect_exit 5 "exit 5: malformed reply" "$PROVSIGN_CLI" --socket "$T/fake.sock" status
wait "$fake"

# the libprovsign example, verified by openssl
head -c 100000 /dev/urandom > "$T/artifact"
chmod 0644 "$T/artifact"
expect_exit 0 "libprovsign example signs a file" as "$RUNNER_UID" "$PROVSIGN_EXAMPLE_SIGN_FILE" ci-release "$T/artifact"
hexsig=$(sed -n 1p "$T/out")
hex_to_file "$hexsig" "$T/example.sig"
expect_exit 0 "pubkey" cli "$RUNNER_UID" key pubkey --principal ci-release
cp "$T/out" "$T/pub.pem"
check "openssl verifies the example's signature over the file" \
        openssl dgst -sha256 -verify "$T/pub.pem" -signature "$T/example.sig" "$T/artifact"
expect_exit 3 "the example reports a refusal" as "$STRANGER_UID" "$PROVSIGN_EXAMPLE_SIGN_FILE" ci-release "$T/artifact"
stop_agent
finish
