#!/bin/bash
# 16 clients signing at once through one agent; every signature verified by
# openssl against the exported public key.
. "$SRCDIR/tests/lib/common.sh"
setup_test
# hsm_timeout bounds how long a request may wait for the token and the log
# (5 s by default): on a loaded 2-core machine (the ASan build beside other
# work) 16 clients' Signs can queue longer, and the agent would answer
# HSM_UNAVAILABLE although nothing failed. This test checks that every
# Sign is answered correctly, not how fast: the bound is generous here.
write_config "hsm_timeout = 120s"
start_agent

expect_exit 0 "pubkey" cli "$RUNNER_UID" key pubkey --principal ci-release
cp "$T/out" "$T/pub.pem"

N=${PROVSIGN_TEST_CONCURRENT_N:-25}
mkdir -p "$T/c"
chmod 0777 "$T/c"
for c in $(seq 1 16); do
        (
                for i in $(seq 1 $N); do
                        d=$(random_digest)
                        if sig=$(cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" 2>>"$T/c/$c.err"); then
                                echo "$d $sig" >> "$T/c/$c.ok"
                        else
                                echo "$d" >> "$T/c/$c.fail"
                        fi
                done
        ) &
done
wait_ok=0
for j in $(jobs -p); do
        [ "$j" = "$AGENT_PID" ] && continue
        wait "$j" || wait_ok=1
done

got=$(cat "$T"/c/*.ok 2>/dev/null | wc -l)
failed=$(cat "$T"/c/*.fail 2>/dev/null | wc -l)
expect_eq "$got" $((16 * N)) "16 clients x $N signatures all returned"
expect_eq "$failed" 0 "no request failed"
# what the failed ones said (their distinct stderr lines), for the log
[ "$failed" = 0 ] || sort "$T"/c/*.err | uniq -c | sort -rn | head -5 >&2
bad=0
while read -r d sig; do
        verify_sig "$T/pub.pem" "$d" "$sig" || bad=$((bad + 1))
done < <(cat "$T"/c/*.ok)
expect_eq "$bad" 0 "openssl verified all $got signatures"
check "agent alive" agent_alive
stop_agent
finish
