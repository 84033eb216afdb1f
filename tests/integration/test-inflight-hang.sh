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
finish
