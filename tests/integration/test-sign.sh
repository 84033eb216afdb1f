#!/bin/bash
# Sign, pubkey, status end to end: a real agent under its own uid on a real
# SoftHSM2 token; runners under other uids; every signature checked by
# openssl against the exported PEM.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent

# status, human and JSON
expect_exit 0 "status" cli "$RUNNER_UID" status
check "status names the token" grep -q "provsign" "$T/out"
expect_exit 0 "status --json" cli "$RUNNER_UID" status --json
check "status json: agent_version, protocol_version 1, 3 principals, runner may sign ci-release" \
        python3 -c '
import json,sys
s=json.load(open(sys.argv[1]))
assert s["agent_version"] and s["protocol_version"]==1, s
assert sorted(s["principals"])==["ci-nightly","ci-release","ci-rsa"], s
assert sorted(s["caller_principals"])==["ci-release","ci-rsa"], s
assert s["token_label"]=="provsign" and s["uptime_seconds"]>=0, s
' "$T/out"

# public keys
for p in ci-release ci-nightly ci-rsa; do
        expect_exit 0 "pubkey of $p" cli "$RUNNER_UID" key pubkey --principal "$p"
        cp "$T/out" "$T/$p.pem"
        check "$p pubkey is a PEM openssl reads" openssl pkey -pubin -in "$T/$p.pem" -noout
done
check "ci-nightly is P-384" sh -c "openssl pkey -pubin -in '$T/ci-nightly.pem' -text -noout | grep -q 'P-384'"
check "ci-rsa is RSA 3072" sh -c "openssl pkey -pubin -in '$T/ci-rsa.pem' -text -noout | grep -q '3072 bit'"

# key id = SHA-256 of the DER SPKI
expect_exit 0 "pubkey --json" cli "$RUNNER_UID" key pubkey --principal ci-release --json
keyid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["keyid"])' "$T/out")
spki_hash=$(openssl pkey -pubin -in "$T/ci-release.pem" -outform DER | sha256sum | cut -c1-64)
expect_eq "$keyid" "$spki_hash" "key id is the SHA-256 of the DER SPKI"
expect_exit 0 "pubkey by --key" cli "$OPERATOR_UID" key pubkey --key "$keyid"
check "pubkey by key id is the same PEM" cmp -s "$T/out" "$T/ci-release.pem"

# signatures, verified by openssl
for i in 1 2 3; do
        d=$(random_digest)
        expect_exit 0 "sign #$i as runner" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d"
        check "openssl verifies signature #$i (P-256)" verify_sig "$T/ci-release.pem" "$d" "$(cat "$T/out")"
done
d=$(random_digest)
expect_exit 0 "sign --json" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" --json
check "sign --json has keyid, algorithm, sig" python3 -c '
import json,sys
s=json.load(open(sys.argv[1]))
assert s["keyid"]==sys.argv[2] and s["algorithm"]=="ecdsa-p256" and s["sig"], s
' "$T/out" "$keyid"
sig=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sig"])' "$T/out")
check "openssl verifies the --json signature" verify_sig "$T/ci-release.pem" "$d" "$sig"
other=$(random_digest)
if verify_sig "$T/ci-release.pem" "$other" "$sig"; then fail "signature verified over the wrong digest"; else pass "signature fails over another digest"; fi

d384=$(od -An -N48 -tx1 /dev/urandom | tr -d ' \n')
expect_exit 0 "sign P-384 (sha384), principal omitted by a one-principal caller" cli "$RUNNER2_UID" sign --digest "sha384:$d384"
check "openssl verifies the P-384 signature" verify_sig "$T/ci-nightly.pem" "$d384" "$(cat "$T/out")"
expect_exit 0 "sign RSA-3072" cli "$RUNNER_UID" sign --principal ci-rsa --digest "sha256:$d"
check "openssl verifies the RSA-3072 PKCS#1 v1.5 signature" verify_sig "$T/ci-rsa.pem" "$d" "$(cat "$T/out")" \
        -pkeyopt digest:sha256
expect_exit 3 "sha256 digest for a P-384 key" cli "$RUNNER2_UID" sign --digest "sha256:$d"
expect_stderr_prefix "INVALID_ARGUMENT" "digest/key mismatch names INVALID_ARGUMENT"

# the key survives a restart: same key id, no new key generated
stop_agent
start_agent
expect_exit 0 "pubkey after restart" cli "$RUNNER_UID" key pubkey --principal ci-release
check "same key after restart" cmp -s "$T/out" "$T/ci-release.pem"
expect_eq "$(grep -c 'generated key' "$T/agent.log")" 3 "keys generated once (3 principals), not at every start"

# the agent runs under its own uid, not root
expect_eq "$(stat -c %u /proc/"$AGENT_PID")" "$AGENT_UID" \
        "agent runs as its own uid"
check "the PIN never appears in the agent's log" bash -c "! grep -qF '$(cat "$T/tok/pin")' '$T/agent.log'"
stop_agent
finish
