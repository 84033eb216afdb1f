#!/bin/bash
# Two stderr lines that were not rate-limited (docs/hardening.md, "Refusal
# floods"): the failed Sign during a token outage ("signing for X failed",
# one line per request on top of the refusal's own) and the connection
# dropped without peer credentials. Both follow the per-uid limit of the
# refusal lines: 20 per uid per window, then counted, and one summary line
# says how many were not logged.
#
# 1. The token goes away (p11-kit server killed); one signer sends 300 Signs
#    on one connection, each answered HSM_UNAVAILABLE: stderr grows by a
#    bounded number of lines (before: over 300), and the summary at
#    shutdown counts the rest.
# 2. Clients whose pid the agent cannot see (they connect from outside the
#    agent's PID namespace, so SO_PEERCRED carries pid 0): 100 connections
#    add at most 21 lines (before: 100), the summary counts them.
. "$SRCDIR/tests/lib/common.sh"
. "$SRCDIR/tests/lib/p11server.sh"
setup_test
p11_setup
p11_agent "hsm_timeout = 2s"
expect_exit 0 "a Sign through p11-kit before the outage" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"

stop_p11
# the outage is seen (HSM_UNAVAILABLE; by another uid, whose refusals do
# not count against the flooding one's window)
outage_seen() {
        as "$RUNNER2_UID" "$PROVSIGN_CLI" sign --principal ci-nightly --digest "sha384:$(random_digest)$(random_digest | head -c 32)" \
                >/dev/null 2>"$T/o.err"
        grep "^HSM_UNAVAILABLE" "$T/o.err" >/dev/null
}
wait_for 60 outage_seen || fail "no HSM_UNAVAILABLE after the token went away: $(cat "$T/o.err")"
sleep 0.5
l0=$(wc -l < "$T/agent.log")
hostile '
s = connect(path)
s.settimeout(60)
n = {}
for i in range(300):
    s.sendall(frame(sign_request("ci-release", os.urandom(32))))
    st = read_response(s)[0]
    n[st] = n.get(st, 0) + 1
print(n)
assert n.get("HSM_UNAVAILABLE", 0) == 300, n
' > "$T/flood.out" 2>&1
check "300 Signs answered HSM_UNAVAILABLE during the outage ($(tail -1 "$T/flood.out"))" grep "HSM_UNAVAILABLE.: 300" "$T/flood.out"
l1=$(wc -l < "$T/agent.log")
echo "stderr lines added by 300 failed Signs: $((l1 - l0))"
check "300 failed Signs add at most 25 stderr lines (added $((l1 - l0)))" [ $((l1 - l0)) -le 25 ]
check "no unlimited \"signing for ... failed\" line" [ "$(grep -c "signing for ci-release failed" "$T/agent.log")" = 0 ]
stop_agent
check "the summary counts the failed Signs not logged one by one" grep -E "^<5>2[0-9]{2} refusals of uid $RUNNER_UID not logged individually" "$T/agent.log"

# 2. The agent in a PID namespace of its own (a shell that forwards SIGTERM
# to it, since PID 1 takes only signals it handles); the test's clients are
# outside it, so SO_PEERCRED gives the agent pid 0 for each of them.
start_p11
AGENT_PREFIX=(unshare --pid --fork sh -c '"$@" & wait $!' sh)
start_agent
# unshare ignores SIGTERM while it waits: signal the agent itself (the
# namespace's shell's child)
NS_AGENT=$(pgrep -P "$(pgrep -P "$AGENT_PID")")
on_cleanup '[ -n "$NS_AGENT" ] && kill -KILL "$NS_AGENT" 2>/dev/null'
check "the agent runs in its own PID namespace" [ -n "$NS_AGENT" ] && [ "$(readlink /proc/"$NS_AGENT"/ns/pid)" != "$(readlink /proc/self/ns/pid)" ]
l0=$(wc -l < "$T/agent.log")
python3 - "$SOCK" > "$T/nocred.out" 2>&1 <<'PY'
import socket, sys
socks = []
for i in range(100):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(sys.argv[1])
    socks.append(s)
# each is dropped at accept: EOF (or a reset) on every one
dropped = 0
for s in socks:
    try:
        dropped += s.recv(1) == b""
    except ConnectionResetError:
        dropped += 1
print("dropped", dropped)
PY
check "100 connections without a visible pid dropped ($(cat "$T/nocred.out"))" grep -x "dropped 100" "$T/nocred.out"
l1=$(wc -l < "$T/agent.log")
echo "stderr lines added by 100 connections without peer credentials: $((l1 - l0))"
check "they add at most 21 stderr lines (added $((l1 - l0)))" [ $((l1 - l0)) -le 21 ]
check "each logged one names the missing credentials" grep "refused connect from uid 4294967295 .*no peer credentials" "$T/agent.log"
kill -TERM "$NS_AGENT"
wait "$AGENT_PID" 2>/dev/null
AGENT_PID=
NS_AGENT=
check "the agent in the namespace stopped" wait_for 30 grep -q "provsign-agent stopped" "$T/agent.log"
check "the summary counts the dropped connections" grep -E "^<5>80 refusals of uid 4294967295 not logged individually" "$T/agent.log"
finish
