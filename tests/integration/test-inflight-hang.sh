#!/bin/bash
# Pipelined requests on one connection when the token hangs (p11-kit server
# frozen with SIGSTOP, tests/lib/p11server.sh): every job keeps its own
# hsm_timeout deadline (each pipelined Sign gets HSM_UNAVAILABLE with its
# own id, and a request without an id waits behind them); and SIGTERM
# drains them: a frame that arrives after SIGTERM is refused ("agent is
# shutting down", with that request's own id, so a pipelining client knows
# which request it refuses) without closing the connection, and the Signs
# in flight are still answered, each with its id, before the agent exits.
. "$SRCDIR/tests/lib/common.sh"
setup_test
. "$SRCDIR/tests/lib/p11server.sh"
p11_setup
start_p11
MODULE=$CLIENT_MODULE
write_config "hsm_timeout = 2s"
AGENT_ENV="P11_KIT_SERVER_ADDRESS=unix:path=$P11SOCK"
start_agent
expect_exit 0 "signing through p11-kit" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"

mkdir -p "$T/m"
chmod 0777 "$T/m"
PY="env PYTHONPATH=$SRCDIR/tests/lib /usr/bin/python3"
COMMON='
import os, sys, time
from rawclient import *
sock, m = sys.argv[1:3]
def sign(rid):
    return frame(with_id(sign_request("ci-release", os.urandom(32)), rid))
def refused(rid):
    return frame(with_id(sign_request("ci-nightly", b"\x01" * 48, 2), rid))
def rid_of(r):
    return r.get(23, [0])[0]
def status_of(r):
    return STATUS[r.get(2, [0])[0]]
def note(name, text=""):
    open(os.path.join(m, name), "w").write(text)
'

kill -STOP -- "-$P11_PID"
check "the token hangs: 4 pipelined Signs each get HSM_UNAVAILABLE with its id, then a request without an id is answered" \
        as "$RUNNER_UID" $PY -c "$COMMON"'
s = connect(sock)
s.settimeout(120)
s.sendall(sign(1) + sign(2) + sign(3) + sign(4) + frame(status_request()))
got = [read_fields(s) for _ in range(5)]
assert sorted(rid_of(r) for r in got[:4]) == [1, 2, 3, 4], got
assert all(status_of(r) == "HSM_UNAVAILABLE" for r in got[:4]), got
assert rid_of(got[4]) == 0 and status_of(got[4]) == "OK" and 12 in got[4], got[4]
' "$SOCK" "$T/m"
kill -CONT -- "-$P11_PID"
check "signing resumes once the token answers" wait_for 60 cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"

# SIGTERM with three Signs in flight on a frozen token (hsm_timeout long
# enough not to answer them first). The refusal sent after them is
# answered at once, so its reply says the agent has read them (they are
# out); then SIGTERM, one more frame (refused: shutting down), and the
# token thaws.
stop_agent
write_config "hsm_timeout = 120s"
start_agent
kill -STOP -- "-$P11_PID"
as "$RUNNER_UID" $PY -c "$COMMON"'
s = connect(sock)
s.settimeout(120)
s.sendall(sign(11) + sign(12) + sign(13) + refused(14))
r = read_fields(s)
assert rid_of(r) == 14 and status_of(r) == "PERMISSION_DENIED", r
note("inflight")
while not os.path.exists(os.path.join(m, "stopping")): time.sleep(0.05)
s.sendall(sign(15))
got = []
while True:
    r = read_fields(s)
    if r is None:
        break
    got.append((rid_of(r), status_of(r), r.get(3, [b""])[0].decode()))
    note("refused")
note("replies", repr(got))
' "$SOCK" "$T/m" > "$T/term.out" 2>&1 &
TERMC=$!
check "three pipelined Signs are out (the refusal after them came back)" wait_for 60 test -e "$T/m/inflight"
kill -TERM "$AGENT_PID"
check "the agent is stopping" wait_for 60 grep -q "finishing in-flight requests" "$T/agent.log"
touch "$T/m/stopping"
check "the frame sent after SIGTERM is answered while the token still hangs" wait_for 60 test -e "$T/m/refused"
kill -CONT -- "-$P11_PID"
gone() { ! kill -0 "$AGENT_PID" 2>/dev/null; }
check "the agent exits" wait_for 120 gone
wait "$AGENT_PID"
expect_eq "$?" 0 "... with status 0"
AGENT_PID=
wait "$TERMC" || fail "the client: $(cat "$T/term.out")"
echo "replies after SIGTERM: $(cat "$T/m/replies" 2>/dev/null)"
check "after SIGTERM: the new frame refused with its own id (connection kept), then each Sign in flight answered with its id" /usr/bin/python3 -c '
import ast, sys
got = ast.literal_eval(open(sys.argv[1]).read())
assert got[0][0] == 15 and got[0][1] == "UNAVAILABLE" and "shutting down" in got[0][2], got
assert sorted(g[0] for g in got[1:]) == [11, 12, 13], got
assert all(g[1] == "OK" for g in got[1:]), got
' "$T/m/replies"
# A job answered at hsm_timeout still takes its slot of the connection
# until the worker hands it back: on a hung token a pipelining connection
# gets no more jobs queued behind the hung ones (it reads nothing more: a
# refusal sent after two expired Signs is answered only once the token
# thaws), and past max_connections x max_inflight_per_connection such jobs
# out (closed connections' too) a new Sign is refused at once instead of
# queued. The refusal on a second connection, answered after the expiries,
# shows the loop has gone past the turn where the first connection would
# have read its third frame. (The tests' read_timeout is 2 s: a frame held behind expired
# jobs is ours to wait on, not a slow client; it was closed after read_timeout.)
write_config "hsm_timeout = 1s" "max_inflight_per_connection = 2" "max_connections = 2"
start_agent
expect_exit 0 "signing through p11-kit again" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"
rm -f "$T/m/"*
kill -STOP -- "-$P11_PID"
as "$RUNNER_UID" $PY -c "$COMMON"'
def conn():
    s = connect(sock)
    s.settimeout(120)
    return s
def sign_alone(rid):
    """A Sign on a connection of its own, closed after its reply. The agent
    may not have seen the last connection close yet (max_connections = 2):
    then it refuses this one, and it is tried again."""
    while True:
        s = conn()
        try:
            s.sendall(sign(rid))
            r = read_fields(s)
        except (BrokenPipeError, ConnectionResetError):
            r = None
        s.close()
        if r is None or (status_of(r) == "UNAVAILABLE" and b"too many connections" in r.get(3, [b""])[0]):
            time.sleep(0.1)
            continue
        return r
a = conn()
a.sendall(sign(1) + sign(2) + refused(3))
got = [read_fields(a) for _ in range(2)]
assert sorted(rid_of(r) for r in got) == [1, 2] and all(status_of(r) == "HSM_UNAVAILABLE" for r in got), got
b = conn()
b.sendall(refused(4))
r = read_fields(b)
assert rid_of(r) == 4 and status_of(r) == "PERMISSION_DENIED", r
b.close()
a.setblocking(False)
try:
    early = a.recv(4096)
except BlockingIOError:
    early = None
assert early is None, "the third frame was read while both Signs before it were still held: %r" % early
note("held")
# 2 jobs out so far; 2 more on connections that close, and the cap (2 x 2) is reached.
for rid in (5, 6):
    r = sign_alone(rid)
    assert rid_of(r) == rid and status_of(r) == "HSM_UNAVAILABLE" and b"within hsm_timeout" in r[3][0], r
r = sign_alone(7)
assert rid_of(r) == 7 and status_of(r) == "HSM_UNAVAILABLE", r
assert b"still out" in r[3][0], r
note("capped", r[3][0].decode())
while not os.path.exists(os.path.join(m, "thawed")): time.sleep(0.05)
a.setblocking(True)
r = read_fields(a)
assert rid_of(r) == 3 and status_of(r) == "PERMISSION_DENIED", r
note("released")
' "$SOCK" "$T/m" > "$T/held.out" 2>&1 &
HELDC=$!
check "expired Signs still hold their connection's slots while the token hangs" wait_for 60 test -e "$T/m/held"
check "past max_connections x max_inflight_per_connection expired jobs out, a Sign is refused at once" wait_for 60 test -e "$T/m/capped"
echo "refusal at the cap: $(cat "$T/m/capped" 2>/dev/null)"
# The token stays hung longer than read_timeout (2 s): not a wait for
# anything, the scenario's length (a held frame was once closed as slow).
sleep 3
kill -CONT -- "-$P11_PID"
touch "$T/m/thawed"
check "once the token hands them back, the held frame is read and answered" wait_for 120 test -e "$T/m/released"
wait "$HELDC" || fail "the client: $(cat "$T/held.out")"
check "signing resumes" wait_for 60 cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"
check "agent alive" agent_alive
stop_agent
finish
