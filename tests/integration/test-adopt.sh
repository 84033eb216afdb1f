#!/bin/bash
# Keys put on the token behind the agent's back (pkcs11-tool, keys made by
# openssl): one labelled provsign/provsign.test/ci-release/7 (the agent's key
# namespace: its log_origin's host part) whose CKA_ID is the SHA-256 of
# its public key is adopted at the next start (logged, listed, in the key
# bundle, retired since ci-release has an active key); one whose CKA_ID does
# not match its public key is ignored, although its label is ours; one that
# turns up for a principal whose keys were all revoked is not adopted until
# an operator's rotation gives it an active key again.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent
expect_exit 0 "the active key of ci-release" cli "$RUNNER_UID" key pubkey --principal ci-release --json
ACTIVE=$(jq -r .keyid "$T/out")
stop_agent

# put_key NAME LABEL [ID]: an openssl P-256 key onto the token (private and
# public objects) with CKA_ID ID, by default the SHA-256 of its SPKI
put_key() {
        openssl ecparam -name prime256v1 -genkey -noout -out "$T/$1.pem" 2>/dev/null &&
                openssl pkey -in "$T/$1.pem" -pubout -outform DER -out "$T/$1.spki" &&
                openssl pkey -in "$T/$1.pem" -pubout -out "$T/$1.pub.pem" &&
                openssl pkcs8 -topk8 -nocrypt -in "$T/$1.pem" -outform DER -out "$T/$1.p8" || return 1
        local id=${3:-$(sha256sum "$T/$1.spki" | cut -c1-64)}
        local type file
        for type in privkey pubkey; do
                file=$T/$1.p8
                [ "$type" = pubkey ] && file=$T/$1.spki
                PROVSIGN_PIN=$(cat "$T/tok/pin") pkcs11-tool --module "$MODULE" --token-label provsign --login \
                        --pin env:PROVSIGN_PIN --write-object "$file" --type "$type" --id "$id" --label "$2" \
                        >>"$T/p11.log" 2>&1 || { cat "$T/p11.log" >&2; return 1; }
        done
        # (root wrote the token's new object files: give them back)
        chown -R "$AGENT_UID:$AGENT_GID" "$T/tok"
}
check "a key with the right CKA_ID put on the token" put_key good provsign/provsign.test/ci-release/7
GOOD=$(sha256sum "$T/good.spki" | cut -c1-64)
check "a key whose CKA_ID is not its public key's hash put on the token" \
        put_key bad provsign/provsign.test/ci-release/8 "$(printf 'not the key' | sha256sum | cut -c1-64)"
BAD=$(sha256sum "$T/bad.spki" | cut -c1-64)

start_agent
check "the agent logged the adoption" grep -q "adopted key $GOOD (provsign/provsign.test/ci-release/7) of principal ci-release from the token" \
        "$T/agent.log"
check "... and not of the mismatched key" bash -c '! grep -q "adopted key .*provsign/provsign.test/ci-release/8" "$1"' _ "$T/agent.log"
expect_exit 0 "key list ci-release" cli "$OPERATOR_UID" key list --principal ci-release --json
expect_eq "$(jq -r --arg k "$GOOD" '.[] | select(.keyid == $k) | .state' "$T/out")" retired \
        "the adopted key is listed, retired (ci-release has an active key)"
expect_eq "$(jq -r --arg k "$GOOD" '.[] | select(.keyid == $k) | .generation' "$T/out")" 7 "... with its label's generation"
expect_eq "$(jq -r --arg k "$ACTIVE" '.[] | select(.keyid == $k) | .state' "$T/out")" active "the active key stays active"
expect_eq "$(jq -r '.[].keyid' "$T/out" | grep -c -e "$BAD" -e "$(printf 'not the key' | sha256sum | cut -c1-64)")" 0 \
        "the mismatched key is not listed under either id"
expect_exit 0 "public key of the adopted key" cli "$RUNNER_UID" key pubkey --key "$GOOD"
check "... is the one openssl made" cmp -s <(openssl pkey -pubin -in "$T/out" -outform DER) "$T/good.spki"
expect_exit 3 "the mismatched key is unknown" cli "$RUNNER_UID" key pubkey --key "$BAD"
expect_stderr_prefix "NOT_FOUND" "... NOT_FOUND"
expect_exit 0 "sign" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" --json
expect_eq "$(jq -r .keyid "$T/out")" "$ACTIVE" "signing still uses the active key"
check "the adoption is in the audit log (sign entries name the key active at their position)" \
        /usr/bin/python3 "$SRCDIR/tests/lib/logcheck.py" "$T/state/log"
stop_agent

# A principal whose keys were all revoked (auto_rotate_on_revoke is off) has
# no active key until an operator rotates. A key that turns up on the token
# for it (a generation whose KEY_ROTATE never got logged, or one put there
# behind the agent's back) must not become active at the next start: it is
# not adopted while the principal has no active key (review finding M4),
# and adopted retired at the first start after a rotation.
start_agent
expect_exit 0 "revoke ci-release's active key" cli "$OPERATOR_UID" key revoke --key "$ACTIVE" --reason "test: M4"
expect_exit 3 "ci-release then has no active key" cli "$RUNNER_UID" sign --principal ci-release \
        --digest "sha256:$(random_digest)"
expect_stderr_prefix "NO_ACTIVE_KEY" "... NO_ACTIVE_KEY"
stop_agent
check "a key for ci-release put on the token while it has none active" put_key late provsign/provsign.test/ci-release/9
LATE=$(sha256sum "$T/late.spki" | cut -c1-64)
start_agent
check "the agent says it did not adopt it" grep -q "key $LATE (provsign/provsign.test/ci-release/9) of principal ci-release is on the token but not in the log.*not adopted" \
        "$T/agent.log"
expect_exit 0 "key list ci-release" cli "$OPERATOR_UID" key list --principal ci-release --json
expect_eq "$(jq -r --arg k "$LATE" '[.[] | select(.keyid == $k)] | length' "$T/out")" 0 "the late key is not listed"
expect_eq "$(jq -r '[.[] | select(.state == "active")] | length' "$T/out")" 0 "ci-release still has no active key"
expect_exit 3 "signing for ci-release is still refused" cli "$RUNNER_UID" sign --principal ci-release \
        --digest "sha256:$(random_digest)"
expect_stderr_prefix "NO_ACTIVE_KEY" "... NO_ACTIVE_KEY"
expect_exit 0 "an operator's rotation makes a new key active" cli "$OPERATOR_UID" key rotate --principal ci-release --json
NEW=$(jq -r .active.keyid "$T/out")
expect_eq "$(jq -r .active.generation "$T/out")" 10 "... of the generation after the late key's label (9 is not reused)"
expect_exit 0 "sign after the rotation" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" --json
expect_eq "$(jq -r .keyid "$T/out")" "$NEW" "... with the rotated key"
stop_agent
start_agent
check "the next start adopts the late key" grep -q "adopted key $LATE (provsign/provsign.test/ci-release/9) of principal ci-release from the token" \
        "$T/agent.log"
expect_exit 0 "key list ci-release" cli "$OPERATOR_UID" key list --principal ci-release --json
expect_eq "$(jq -r --arg k "$LATE" '.[] | select(.keyid == $k) | .state' "$T/out")" retired "... retired"
expect_eq "$(jq -r --arg k "$NEW" '.[] | select(.keyid == $k) | .state' "$T/out")" active "the rotated key stays active"
check "the log replays" /usr/bin/python3 "$SRCDIR/tests/lib/logcheck.py" "$T/state/log"
stop_agent
finish
