#!/bin/bash
# Token outage and recovery: the agent reaches SoftHSM2 through `p11-kit
# server` + p11-kit-client.so (the shape of a network HSM). While 4 clients
# sign: the server is killed (callers get HSM_UNAVAILABLE, the agent stays
# up), started again (signing resumes by itself: sessions, login and key
# objects redone), then frozen with SIGSTOP (a token call that hangs: callers
# get HSM_UNAVAILABLE at hsm_timeout) and thawed. Every signature returned
# verifies with openssl and is in the audit log; the log verifies against
# the agent's checkpoint. Prints the outage detection and recovery times.
. "$SRCDIR/tests/lib/common.sh"
setup_test

. "$SRCDIR/tests/lib/p11server.sh"
p11_setup

# monotonic ms, the clock tests/lib/signprobe.py logs with
now_ms() { python3 -c 'import time; print(int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000))'; }

start_p11
MODULE=$CLIENT_MODULE
write_config "hsm_timeout = 2s"
AGENT_ENV="P11_KIT_SERVER_ADDRESS=unix:path=$P11SOCK"
start_agent
expect_exit 0 "pubkey through p11-kit" cli "$RUNNER_UID" key pubkey --principal ci-release
cp "$T/out" "$T/pub.pem"

# 4 CLI clients sign until told to stop; each call: start end (wall clock
# ms) rc status digest signature
mkdir -p "$T/c"
chmod 0777 "$T/c"
for c in 1 2 3 4; do
        (
                while [ ! -e "$T/stop" ]; do
                        d=$(random_digest)
                        s=$(date +%s%3N)
                        out=$(timeout 30 env PROVSIGN_AGENT_SOCK="$SOCK" setpriv --reuid="$RUNNER_UID" --regid="$RUNNER_UID" \
                                --groups="$CLIENTS_GID" "$PROVSIGN_CLI" sign --principal ci-release --digest "sha256:$d" \
                                2>"$T/c/$c.err")
                        rc=$?
                        st=$(head -c 64 "$T/c/$c.err" | head -1 | cut -d: -f1)
                        echo "$s $(date +%s%3N) $rc ${st:--} $d ${out:--}" >> "$T/c/$c.log"
                done
        ) &
done

# and one probe on a single connection, for the times (no process start per call)
# (20 ms between calls: every signature it gets is verified below, one openssl each)
as "$RUNNER_UID" python3 "$SRCDIR/tests/lib/signprobe.py" "$SOCK" ci-release "$T/stop" "$T/c/probe.calls" 20 &

# Each phase lasts until what it is for has been seen (with a generous
# deadline): probe STATUS SINCE N: the probe has N calls answered STATUS
# that started (OK) or ended (failures) at or after SINCE (monotonic ms).
probe() {
        local col=1
        [ "$1" = OK ] || col=2
        [ "$(awk -v st="$1" -v t="$2" -v c="$col" '$3 == st && $c >= t' "$T/c/probe.calls" 2>/dev/null | wc -l)" -ge "$3" ]
}
# cli_calls RC N: the CLI clients have N calls that exited RC
cli_calls() { [ "$(cat "$T"/c/[1-4].log 2>/dev/null | awk -v rc="$1" '$3 == rc' | wc -l)" -ge "$2" ]; }
check "signing before the outage" wait_for 60 eval 'probe OK 0 5 && cli_calls 0 4'
stop_p11
t_kill=$(now_ms)
check "HSM_UNAVAILABLE once the token is gone" wait_for 60 eval 'probe HSM_UNAVAILABLE "$t_kill" 3 && cli_calls 3 1'
check "the agent is up while the token is gone" agent_alive
expect_exit 0 "status answers during the outage" cli "$OPERATOR_UID" status
t_back=$(now_ms)
start_p11
n=$(cat "$T"/c/[1-4].log | awk '$3 == 0' | wc -l)
check "signing resumes once the token is back" wait_for 60 eval 'probe OK "$t_back" 3 && cli_calls 0 $((n + 2))'
t_freeze=$(now_ms)
kill -STOP -- "-$P11_PID"
check "HSM_UNAVAILABLE at hsm_timeout while the token hangs" wait_for 60 probe HSM_UNAVAILABLE "$t_freeze" 1
t_thaw=$(now_ms)
kill -CONT -- "-$P11_PID"
check "signing resumes once the token answers again" wait_for 60 probe OK "$t_thaw" 3
touch "$T/stop"
for j in $(jobs -p); do [ "$j" = "$AGENT_PID" ] || [ "$j" = "$P11_PID" ] || wait "$j"; done

d=$(random_digest)
expect_exit 0 "signing works after the outages" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d"
check "the agent is still up" agent_alive
check "the agent logged the outage" grep -q "is unavailable" "$T/agent.log"
check "the agent logged the re-open" grep -q "re-opened" "$T/agent.log"

cat "$T"/c/*.log | sort -n > "$T/calls"
awk '{print $1, $2, ($3 == "OK" ? 0 : ($3 == "HSM_UNAVAILABLE" ? 3 : 9)), $3, $4, "-"}' "$T/c/probe.calls" > "$T/probe"
python3 - "$T/probe" "$t_kill" "$t_back" "$t_freeze" "$t_thaw" 2000 > "$T/times" <<'PY'
import sys
calls = [l.split() for l in open(sys.argv[1])]
t_kill, t_back, t_freeze, t_thaw, hsm = map(int, sys.argv[2:7])
calls = [(int(s), int(e), int(rc), st, d, sig) for s, e, rc, st, d, sig in calls]
bad = [c for c in calls if not (c[2] == 0 or (c[2] == 3 and c[3] == "HSM_UNAVAILABLE"))]
assert not bad, "unexpected results: %r" % bad[:3]
unavail_kill = [c for c in calls if c[2] == 3 and t_kill <= c[1] <= t_back]
assert unavail_kill, "no HSM_UNAVAILABLE while the server was down"
ok_down = [c for c in calls if c[2] == 0 and c[0] > t_kill + 50 and c[1] < t_back]
assert not ok_down, "signatures while the server was down: %r" % ok_down[:3]
ok_back = [c for c in calls if c[2] == 0 and t_back <= c[0] and c[1] <= t_freeze]
assert ok_back, "no signature after the server came back"
unavail_freeze = [c for c in calls if c[2] == 3 and t_freeze <= c[1] <= t_thaw + 500]
assert unavail_freeze, "no HSM_UNAVAILABLE while the server was frozen"
ok_thaw = [c for c in calls if c[2] == 0 and c[0] >= t_thaw]
assert ok_thaw, "no signature after the server was thawed"
detect = max(0, min(c[1] for c in unavail_kill) - t_kill)
slowest_down = max(c[1] - c[0] for c in unavail_kill)
recover = min(c[1] for c in ok_back) - t_back
hang = max(c[1] - c[0] for c in unavail_freeze)
print("probe calls=%d ok=%d unavailable=%d" % (len(calls), sum(c[2] == 0 for c in calls), sum(c[2] == 3 for c in calls)))
print("outage detected %d ms after the kill (slowest failing call %d ms)" % (detect, slowest_down))
print("signing resumed %d ms after the server came back" % recover)
print("frozen token: longest HSM_UNAVAILABLE call %d ms (hsm_timeout %d ms)" % (hang, hsm))
print("first OK after the thaw %d ms" % (min(c[1] for c in ok_thaw) - t_thaw))
PY
rc=$?
cat "$T/times"
expect_eq "$rc" 0 "the probe got only OK or HSM_UNAVAILABLE; HSM_UNAVAILABLE in both outages; signing resumed after each"
check "the CLI clients got only signatures or HSM_UNAVAILABLE (exit 3)" awk '$3 != 0 && !($3 == 3 && $4 == "HSM_UNAVAILABLE") { exit 1 }' "$T/calls"
check "the CLI clients got HSM_UNAVAILABLE during the outages" awk '$3 == 3 { n++ } END { exit !n }' "$T/calls"

bad=0
n_ok=0
while read -r _ _ rc _ d sig; do
        [ "$rc" = 0 ] || continue
        n_ok=$((n_ok + 1))
        verify_sig "$T/pub.pem" "$d" "$sig" || bad=$((bad + 1))
        echo "$d" >> "$T/ok-digests"
done < "$T/calls"
n_probe=0
while read -r _ _ st d sig; do
        [ "$st" = OK ] || continue
        n_probe=$((n_probe + 1))
        verify_sig "$T/pub.pem" "$d" "$sig" || bad=$((bad + 1))
        echo "$d" >> "$T/ok-digests"
done < "$T/c/probe.calls"
expect_eq "$bad" 0 "openssl verified all $n_ok + $n_probe signatures returned (CLI clients + probe)"

stop_agent
start_agent
expect_exit 0 "checkpoint" cli "$STRANGER_UID" audit checkpoint --json
cp "$T/out" "$T/cp.json"
python3 "$SRCDIR/tests/lib/segread.py" "$T/state/log" "$T/cp.json" > "$T/seg.json"
expect_eq "$?" 0 "the log verifies against the agent's checkpoint"
missing=$(python3 -c '
import json, sys
logged = set(json.load(open(sys.argv[1]))["sign_digests"])
print(sum(1 for l in open(sys.argv[2]) if l.strip() not in logged))' "$T/seg.json" "$T/ok-digests")
expect_eq "$missing" 0 "every returned signature is in the log ($(wc -l < "$T/ok-digests"))"
# a Sign the token failed is a refusal: a REFUSED entry (rate-limited per uid)
expect_exit 0 "audit export" cli "$AUDITOR_UID" audit export
# (their principal is null: the agent does not record it for a token failure)
check "the log has REFUSED entries for the Signs the token failed (status HSM_UNAVAILABLE, the caller's uid)" \
        jq -se --arg uid "$RUNNER_UID" '[.[] | select(.event == "REFUSED" and .status == "HSM_UNAVAILABLE"
                and (.uid | tostring) == $uid)] | length > 0' "$T/out"
stop_agent
finish
