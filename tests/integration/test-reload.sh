#!/bin/bash
# SIGHUP re-reads the config: a good new policy applies to the next request,
# a bad one is refused with a logged reason and the old policy stays.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent
d=$(random_digest)

# hup WHAT: SIGHUP, then wait until the agent logged the outcome.
hup() {
        local before
        before=$(grep -c "config re" "$T/agent.log")
        kill -HUP "$AGENT_PID"
        wait_for 60 eval '[ "$(grep -c "config re" "$T/agent.log")" -gt "$before" ]' && return 0
        fail "no reload outcome logged after SIGHUP ($1)"
}

expect_exit 3 "stranger cannot sign before the reload" cli "$STRANGER_UID" sign --principal ci-new --digest "sha256:$d"
expect_stderr_prefix "NOT_FOUND" "ci-new does not exist yet"

# 1. add a principal: it gets a key and its signer can sign at once
cat >> "$CONF" <<CONF

[principal ci-new]
uids = $STRANGER_UID
CONF
hup "add a principal"
check "reload logged" grep -q "config reloaded from $CONF" "$T/agent.log"
expect_exit 0 "new principal signs right after SIGHUP" cli "$STRANGER_UID" sign --principal ci-new --digest "sha256:$d"
sig=$(cat "$T/out")
expect_exit 0 "new principal's public key" cli "$STRANGER_UID" key pubkey --principal ci-new
cp "$T/out" "$T/new.pem"
check "openssl verifies the new principal's signature" verify_sig "$T/new.pem" "$d" "$sig"

# 2. remove a uid: refused from the next request on
sed -i "s/^uids = $RUNNER_UID $MULTI_UID$/uids = $MULTI_UID/" "$CONF"
hup "remove a uid"
expect_exit 3 "removed uid is refused" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d"
expect_stderr_prefix "PERMISSION_DENIED" "removed uid: PERMISSION_DENIED"
expect_exit 0 "the remaining uid still signs" cli "$MULTI_UID" sign --principal ci-release --digest "sha256:$d"

# 3. break the file: refused, logged, old policy stays
cp "$CONF" "$T/good.conf"
echo "bogus_key = 1" >> "$CONF"
hup "broken file"
check "the refusal names the file, line and problem" \
        grep -q "config reload refused, keeping the running policy: $CONF:$(wc -l < "$CONF"): unknown key \"bogus_key\"" "$T/agent.log"
expect_exit 0 "old policy still applies: ci-new signs" cli "$STRANGER_UID" sign --principal ci-new --digest "sha256:$d"
expect_exit 3 "old policy still applies: removed uid still refused" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d"

# 4. a change that needs a restart is reported, the rest applies
sed "s|^token_label = .*|token_label = other|" "$T/good.conf" > "$CONF"
hup "token_label changed"
check "token_label change is reported as needing a restart" grep -q "token_label changed; it takes effect at the next restart" "$T/agent.log"
expect_exit 0 "signing continues on the running token" cli "$MULTI_UID" sign --principal ci-release --digest "sha256:$d"
# 5. rate_limit in a principal: N per window, then RATE_LIMITED; others unaffected
cat >> "$CONF" <<CONF

[principal ci-limited]
uids = $RUNNER2_UID
rate_limit = 3/h
CONF
hup "a rate-limited principal"
for i in 1 2 3; do
        expect_exit 0 "rate-limited principal: signature $i of 3" cli "$RUNNER2_UID" sign --principal ci-limited --digest "sha256:$d"
done
expect_exit 3 "the 4th signature in the hour is refused" cli "$RUNNER2_UID" sign --principal ci-limited --digest "sha256:$d"
expect_stderr_prefix "RATE_LIMITED: " "over the limit: RATE_LIMITED first on stderr"
check "the refusal says when to retry" grep -q "retry in" "$T/err"
expect_exit 0 "another principal is not limited" cli "$MULTI_UID" sign --principal ci-release --digest "sha256:$d"
check "the refusal was logged" grep -q "refused Sign .*RATE_LIMITED" "$T/agent.log"
check "agent alive" agent_alive
stop_agent
finish
