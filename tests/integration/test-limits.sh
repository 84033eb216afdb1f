#!/bin/bash
# Limits and process promises of the running agent (docs/operations.md,
# "Config" and "Bad input"): one key operation per principal at a time;
# max_connections and max_connections_per_uid refuse with UNAVAILABLE and
# close; idle_timeout closes an idle connection and not an active one;
# rate_limit refuses with RATE_LIMITED "retry in" and its window resets;
# compromised_since more than 5 min ahead is refused; the watchdog pings a
# (stand-in) NOTIFY_SOCKET, READY=1 first and STOPPING=1 at SIGTERM; the
# process is non-dumpable and holds a locked, not-dumped page; after
# SIGTERM a request on an open connection gets UNAVAILABLE "agent is
# shutting down", and a reader that never reads does not hold the exit past
# the 10 s grace (read_timeout is 300 s here).
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config "max_connections = 8" "max_connections_per_uid = 3"
cat >> "$CONF" <<CONF

[principal ci-limited]
uids = $RUNNER_UID
rate_limit = 3/m
CONF
PY="env PYTHONPATH=$SRCDIR/tests/lib python3"
mkdir -m 0777 "$T/m"

# ---- the stand-in service manager: NOTIFY_SOCKET, every datagram a line ----
notify_standin "$T/n"
AGENT_ENV="NOTIFY_SOCKET=$T/n/notify WATCHDOG_USEC=1000000"
notified() { [ "$(count_lines "^$1\$" "$T/n/log")" -ge "$2" ]; }

start_agent
check "READY=1 on the notify socket" wait_for 60 notified READY=1 1
check "WATCHDOG=1 pings (WATCHDOG_USEC=1s): three of them" wait_for 60 notified WATCHDOG=1 3
check "READY=1 came before the first ping" test "$(grep -m1 -E '^(READY|WATCHDOG)=1$' "$T/n/log")" = READY=1

# ---- non-dumpable, a locked page excluded from core dumps ----
expect_eq "$(awk '/^Uid:/ {print $2}' /proc/"$AGENT_PID"/status)" "$AGENT_UID" "the agent runs as uid $AGENT_UID"
# /proc/PID of a non-dumpable process belongs to root, not to its uid
expect_eq "$(stat -c %u /proc/"$AGENT_PID"/status)" 0 "the agent is non-dumpable (its /proc entries are root's)"
# AddressSanitizer intercepts mlock() and makes it a no-op, so the sanitizer
# build cannot show a locked page; the normal build checks it (run-suite
# runs both).
# (grep without -q: with pipefail, -q ending early would fail ldd with SIGPIPE)
if ldd "$PROVSIGN_AGENT" 2>/dev/null | grep libasan >/dev/null; then
        echo "note: the mlocked PIN page is checked in the normal build only (ASan makes mlock a no-op)"
else
        check "a mapping of the agent is mlocked and MADV_DONTDUMP (VmFlags lo and dd; the PIN page)" \
                awk '/^VmFlags:/ { lo = dd = 0; for (i = 2; i <= NF; i++) { if ($i == "lo") lo = 1; if ($i == "dd") dd = 1 }
                      if (lo && dd) found = 1 } END { exit !found }' /proc/"$AGENT_PID"/smaps
        check "VmLck is not zero" awk '/^VmLck:/ { exit !($2 > 0) }' /proc/"$AGENT_PID"/status
fi

# ---- rate_limit = 3/m on ci-limited: 3 signatures, then RATE_LIMITED ----
check "6 Signs of ci-limited at once: 3 OK, then RATE_LIMITED naming the limit and the retry" \
        as "$RUNNER_UID" $PY -c '
import os, sys
from rawclient import *
s = connect(sys.argv[1])
s.sendall(b"".join(frame(sign_request("ci-limited", os.urandom(32))) for _ in range(6)))
r = [read_response(s) for _ in range(6)]
st = [x[0] for x in r]
assert st == ["OK"] * 3 + ["RATE_LIMITED"] * 3, st
assert "rate_limit of 3 per 60s; retry in" in r[3][1], r[3][1]' "$SOCK"
expect_exit 3 "the CLI is refused too" cli "$RUNNER_UID" sign --principal ci-limited --digest "sha256:$(random_digest)"
expect_stderr_prefix "RATE_LIMITED" "... with RATE_LIMITED"
expect_exit 0 "other principals are not limited" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"

# ---- compromised_since more than 5 minutes ahead is refused ----
expect_exit 0 "ci-rsa's key" cli "$RUNNER_UID" key pubkey --principal ci-rsa --json
NK=$(jq -r .keyid "$T/out")
for ahead in "1 hour" "6 minutes"; do
        expect_exit 3 "revoke with compromised_since $ahead ahead" cli "$OPERATOR_UID" key revoke --key "$NK" --reason test \
                --compromised-since "$(date -u -d "+$ahead" +%Y-%m-%dT%H:%M:%SZ)"
        expect_stderr_prefix "INVALID_ARGUMENT" "... is refused with INVALID_ARGUMENT"
done
expect_exit 0 "the key still signs" cli "$RUNNER_UID" sign --principal ci-rsa --digest "sha256:$(random_digest)" --json
expect_eq "$(jq -r .keyid "$T/out")" "$NK" "... with the same key"
expect_exit 0 "compromised_since 1 minute ahead (clock skew) is accepted" cli "$OPERATOR_UID" key revoke --key "$NK" \
        --reason test --compromised-since "$(date -u -d "+1 minute" +%Y-%m-%dT%H:%M:%SZ)" --json
expect_eq "$(jq -r .key.state "$T/out")" revoked "... and the key is revoked"

# ---- one key operation per principal at a time: two RotateKey of ci-rsa
# (RSA-3072 generation takes a while in SoftHSM2) sent at once on two
# connections; the second is refused while the first runs ----
check "a second key operation on a principal while one runs: UNAVAILABLE, the first completes" \
        as "$OPERATOR_UID" $PY -c '
import sys
from rawclient import *
rot = frame(request(17, field_bytes(1, b"ci-rsa")))
for attempt in range(5):
    a, b = connect(sys.argv[1]), connect(sys.argv[1])
    a.sendall(rot); b.sendall(rot)
    r = sorted([read_response(a)[:2], read_response(b)[:2]])  # either may be taken first
    if r == [("OK", ""), ("OK", "")]:
        continue  # one was done before the other arrived: again
    assert r[0][0] == "OK" and r[1] == ("UNAVAILABLE", "another key operation on principal \"ci-rsa\" is under way; retry"), r
    sys.exit(0)
sys.exit("five pairs of rotations never overlapped")' "$SOCK"
expect_exit 0 "key operations go on afterwards (rotate ci-release)" \
        cli "$OPERATOR_UID" key rotate --principal ci-release

# ---- max_connections_per_uid = 3, max_connections = 8 ----
# hold NAME UID N: N connections of UID, each answered once, held until
# $T/m/NAME.stop exists
hold() {
        as "$2" $PY -c '
import os, sys, time
from rawclient import *
conns = []
for i in range(int(sys.argv[3])):
    s = connect(sys.argv[1]); s.sendall(frame(status_request()))
    assert read_response(s)[0] == "OK", i
    conns.append(s)
open(sys.argv[2] + ".up", "w").close()
while not os.path.exists(sys.argv[2] + ".stop"): time.sleep(0.05)' "$SOCK" "$T/m/$1" "$3" &
}
# refused UID MESSAGE: a new connection of UID is answered UNAVAILABLE MESSAGE and closed
refused() {
        as "$1" $PY -c '
import sys
from rawclient import *
s = connect(sys.argv[1]); s.settimeout(30)
st, msg, _ = read_response(s)
assert st == "UNAVAILABLE" and msg == sys.argv[2], (st, msg)
assert closed(s)' "$SOCK" "$2"
}
hold r1 "$RUNNER_UID" 3
check "uid $RUNNER_UID holds 3 connections" wait_for 60 test -e "$T/m/r1.up"
check "a 4th connection of that uid: UNAVAILABLE, closed" refused "$RUNNER_UID" "too many connections from this uid (max_connections_per_uid)"
check "the agent logged it" grep -q "refused connect from uid $RUNNER_UID .*UNAVAILABLE: too many connections from this uid (max_connections_per_uid)" "$T/agent.log"
expect_exit 0 "another uid is served meanwhile" cli "$STRANGER_UID" status
hold r2 "$RUNNER2_UID" 3
hold o1 "$OPERATOR_UID" 2
check "8 connections held (3 + 3 + 2)" wait_for 60 eval 'test -e "$T/m/r2.up" && test -e "$T/m/o1.up"'
check "a 9th connection (any uid): UNAVAILABLE, closed" refused "$STRANGER_UID" "too many connections (max_connections)"
check "the agent logged it" grep -q "refused connect from uid $STRANGER_UID .*UNAVAILABLE: too many connections (max_connections)" "$T/agent.log"
touch "$T/m/r1.stop" "$T/m/r2.stop" "$T/m/o1.stop"
for j in $(jobs -p); do [ "$j" = "$AGENT_PID" ] || [ "$j" = "$NOTIFY_PID" ] || wait "$j"; done
served() { cli "$STRANGER_UID" status >/dev/null 2>&1; }
check "once they are closed, new connections are served" wait_for 60 served
# each refusal is in the audit log (REFUSED, UNAVAILABLE, the caller's uid)
expect_exit 0 "audit export" cli "$AUDITOR_UID" audit export
for u in "$RUNNER_UID" "$STRANGER_UID"; do
        check "the audit log has the refused connection of uid $u" jq -se --arg uid "$u" '[.[] | select(.event == "REFUSED"
                and .status == "UNAVAILABLE" and (.uid | tostring) == $uid)] | length == 1' "$T/out"
done

# ---- rate_limit: the window of a minute resets (same agent) ----
signs_limited() { cli "$RUNNER_UID" sign --principal ci-limited --digest "sha256:$(random_digest)" >/dev/null 2>&1; }
check "ci-limited signs again once its window has passed" wait_for 150 signs_limited
stop_agent
check "STOPPING=1 at SIGTERM" notified STOPPING=1 1

# ---- idle_timeout = 2s: the idle connection is closed, the active one not ----
sed -i 's/^read_timeout = .*/read_timeout = 300s\nidle_timeout = 2s/' "$CONF"
start_agent
check "an idle connection is closed by idle_timeout; one that sends a Status every 0.2 s outlives it and still answers" \
        as "$RUNNER_UID" $PY -c '
import select, sys, time
from rawclient import *
idle, busy = connect(sys.argv[1]), connect(sys.argv[1])
for s in (idle, busy):
    s.sendall(frame(status_request())); assert read_response(s)[0] == "OK"
deadline = time.monotonic() + 120
while not select.select([idle], [], [], 0)[0]:
    assert time.monotonic() < deadline, "the idle connection was never closed"
    busy.sendall(frame(status_request())); assert read_response(busy)[0] == "OK"
    time.sleep(0.2)
assert closed(idle)
busy.sendall(frame(status_request())); assert read_response(busy)[0] == "OK"' "$SOCK"

# ---- SIGTERM: a request on an open connection gets "agent is shutting
# down"; a reader that never reads does not hold the exit past the grace ----
sed -i 's/^idle_timeout = 2s$//' "$CONF"
stop_agent
start_agent
stops=$(count_lines '^STOPPING=1$' "$T/n/log")
as "$RUNNER2_UID" $PY -c '
import os, sys, time
from rawclient import *
sock, m, notify, stops = sys.argv[1:5]
open_conn = connect(sock)
open_conn.sendall(frame(status_request())); assert read_response(open_conn)[0] == "OK"
# replies nobody reads: 3000 GetLogKey answers fill the socket buffers
stuck = connect(sock)
stuck.sendall(frame(request(16)) * 3000)
open(m + "/term.up", "w").close()
while open(notify).read().split("\n").count("STOPPING=1") <= int(stops): time.sleep(0.05)
open_conn.settimeout(30)
open_conn.sendall(frame(status_request()))
st, msg, _ = read_response(open_conn)
open(m + "/term.reply", "w").write("%s %s" % (st, msg))
# a new connection now is not served (docs/operations.md: UNAVAILABLE
# "agent is shutting down"; the agent stops accepting, so it may instead
# be closed at the exit)
late = connect(sock); late.settimeout(60)
try:
    late.sendall(frame(status_request()))
    r = read_response(late)
    got = "%s %s" % (r[0], r[1]) if r else "closed"
except OSError as e:
    got = "closed (%s)" % type(e).__name__
open(m + "/term.late", "w").write(got)
while not os.path.exists(m + "/term.stop"): time.sleep(0.05)' "$SOCK" "$T/m" "$T/n/log" "$stops" > "$T/term.out" 2>&1 &
TERMC=$!
check "a connection is open and another has 3000 replies unread" wait_for 60 test -e "$T/m/term.up"
kill -TERM "$AGENT_PID"
check "STOPPING=1" wait_for 60 notified STOPPING=1 $((stops + 1))
check "a request after SIGTERM on an open connection is answered" wait_for 60 test -s "$T/m/term.reply"
expect_eq "$(cat "$T/m/term.reply")" "UNAVAILABLE agent is shutting down" "... UNAVAILABLE \"agent is shutting down\""
gone() { ! kill -0 "$AGENT_PID" 2>/dev/null; }
check "the agent exits although a reader never reads (read_timeout 300s; the grace is 10 s)" wait_for 120 gone
wait "$AGENT_PID"
expect_eq "$?" 0 "... with status 0"
AGENT_PID=
touch "$T/m/term.stop"
wait "$TERMC" || fail "the SIGTERM client: $(cat "$T/term.out")"
echo "a connection made after SIGTERM got: $(cat "$T/m/term.late" 2>/dev/null)"
check "a connection made after SIGTERM is not served" bash -c '[ -s "$1" ] && ! grep -q "^OK" "$1"' _ "$T/m/term.late"

finish
