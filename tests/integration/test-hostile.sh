#!/bin/bash
# Hostile bytes on the socket: oversized frames, garbage, an empty request,
# a bad digest, a client that vanishes mid-frame, one that stalls half way.
# Each gets its answer; the agent keeps serving everyone else.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent

sign_still_works() {
        local d
        d=$(random_digest)
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" >/dev/null 2>&1
}

check "a frame over 64 KiB: INVALID_ARGUMENT naming the limit, connection closed" hostile '
s = connect(path)
s.sendall(struct.pack(">I", 65537) + b"x" * 100)
st, msg, _ = read_response(s)
assert st == "INVALID_ARGUMENT" and "65536" in msg, (st, msg)
assert closed(s)'
check "signing still works after the oversized frame" sign_still_works

check "a 4 GiB length header: refused before any payload is read" hostile '
s = connect(path)
s.sendall(b"\xff\xff\xff\xff")
st, msg, _ = read_response(s)
assert st == "INVALID_ARGUMENT", st
assert closed(s)'

check "garbage bytes: INVALID_ARGUMENT undecodable, connection closed" hostile '
s = connect(path)
s.sendall(frame(b"\xff" * 11))
st, msg, _ = read_response(s)
assert st == "INVALID_ARGUMENT" and "undecodable" in msg, (st, msg)
assert closed(s)'
check "signing still works after garbage" sign_still_works

check "an empty request: INVALID_ARGUMENT, and the connection serves the next request" hostile '
s = connect(path)
s.sendall(frame(b""))
st, msg, _ = read_response(s)
assert st == "INVALID_ARGUMENT" and "no known body" in msg, (st, msg)
s.sendall(frame(status_request()))
st, msg, fields = read_response(s)
assert st == "OK" and 12 in fields, (st, msg, fields)'

check "an unknown body field: INVALID_ARGUMENT" hostile '
s = connect(path)
s.sendall(frame(field_varint(1, 1) + field_bytes(99, b"")))
st, msg, _ = read_response(s)
assert st == "INVALID_ARGUMENT", st'

check "a 31-byte sha256 digest: INVALID_ARGUMENT, nothing signed" hostile '
s = connect(path)
s.sendall(frame(sign_request("ci-release", b"\x01" * 31)))
st, msg, fields = read_response(s)
assert st == "INVALID_ARGUMENT" and "32" in msg and 10 not in fields, (st, msg, fields)'

check "an unknown digest algorithm: INVALID_ARGUMENT" hostile '
s = connect(path)
s.sendall(frame(sign_request("ci-release", b"\x01" * 32, alg=7)))
st, msg, _ = read_response(s)
assert st == "INVALID_ARGUMENT" and "unknown digest" in msg, (st, msg)'

check "several requests in one write: one reply each, in order" hostile '
s = connect(path)
s.sendall(frame(status_request()) + frame(sign_request("ci-release", b"\x02" * 32)) + frame(status_request()))
r = [read_response(s) for _ in range(3)]
assert [x[0] for x in r] == ["OK", "OK", "OK"], r
assert 12 in r[0][2] and 10 in r[1][2] and 12 in r[2][2], r'

check "512 requests in one write, replies read only afterwards: all 512 answered" hostile '
s = connect(path)
s.sendall(frame(status_request()) * 512)
r = [read_response(s) for _ in range(512)]
assert all(x is not None and x[0] == "OK" for x in r), [x for x in r if not x or x[0] != "OK"][:3]'

check "a Sign whose annotations would not fit a reply: INVALID_ARGUMENT before signing" hostile '
ann = b"".join(field_bytes(5, field_bytes(1, b"k%02d" % i) + field_bytes(2, b"v" * 2000)) for i in range(30))
body = field_bytes(1, b"ci-release") + field_varint(2, 1) + field_bytes(3, b"\x03" * 32) + ann
s = connect(path)
s.sendall(frame(request(10, body)))
st, msg, fields = read_response(s)
assert st == "INVALID_ARGUMENT" and "at most" in msg and 10 not in fields, (st, msg)'

check "a payload type that is not UTF-8: INVALID_ARGUMENT" hostile '
body = field_bytes(1, b"ci-release") + field_varint(2, 1) + field_bytes(3, b"\x04" * 32) + field_bytes(4, b"text/\xff\xfe")
s = connect(path)
s.sendall(frame(request(10, body)))
st, msg, _ = read_response(s)
assert st == "INVALID_ARGUMENT" and "payload_type" in msg, (st, msg)'

# Edge-triggered sockets: the peer's shutdown edge may come with the request
# bytes, before the reply; the EOF behind them must still close the
# connection at once (not after idle_timeout, holding a per-uid slot).
check "a Sign, then the client shuts its end: answered, then closed promptly" hostile '
import socket
s = connect(path)
s.sendall(frame(sign_request("ci-release", b"\x05" * 32)))
s.shutdown(socket.SHUT_WR)
st, msg, fields = read_response(s)
assert st == "OK" and 10 in fields, (st, msg)
s.settimeout(3)
assert closed(s)'
check "a Status, then the client shuts its end: answered, then closed promptly" hostile '
import socket
s = connect(path)
s.sendall(frame(status_request()))
s.shutdown(socket.SHUT_WR)
st, msg, fields = read_response(s)
assert st == "OK", (st, msg)
s.settimeout(3)
assert closed(s)'

check "a client that disconnects mid-frame" hostile '
s = connect(path)
s.sendall(struct.pack(">I", 200) + b"\x08\x01")
s.close()'
check "signing still works after a mid-frame disconnect" sign_still_works

# A client that sends half a frame and goes silent holds no worker: others
# sign meanwhile, and the agent drops it after read_timeout (2s here).
mkdir -m 0777 "$T/m"
as "$RUNNER_UID" env PYTHONPATH="$SRCDIR/tests/lib" SOCK="$SOCK" MARK="$T/m/stall.sent" python3 -c '
import os, struct, time
from rawclient import *
s = connect(os.environ["SOCK"])
s.sendall(struct.pack(">I", 100) + b"\x08")
open(os.environ["MARK"], "w").close()
s.settimeout(8)
t = time.time()
gone = closed(s)
print("%.1f" % (time.time() - t))
assert gone' > "$T/stall" 2>&1 &
stall=$!
check "the stalling client sent its half frame" wait_for 30 test -e "$T/m/stall.sent"
for i in 1 2 3; do check "sign #$i while a client stalls mid-frame" sign_still_works; done
if wait "$stall"; then
        pass "the stalled client was disconnected after $(cat "$T/stall")s (read_timeout 2s)"
else
        fail "the stalled client was not disconnected: $(cat "$T/stall")"
fi

# Pipelining: 40 Sign requests in one write on one connection. The agent
# serves a connection's requests one at a time (docs/operations.md "Config",
# max_inflight_per_connection): all 40 are answered, in the order sent,
# each with the receipt of its own digest.
check "40 pipelined Sign requests on one connection: 40 answers, in order, each for its digest" hostile '
digests = [os.urandom(32) for _ in range(40)]
s = connect(path)
s.sendall(b"".join(frame(sign_request("ci-release", d)) for d in digests))
last = -1
for i, d in enumerate(digests):
    hdr = recv_exact(s, 4)
    assert hdr, "connection closed after %d answers" % i
    resp = fields(recv_exact(s, struct.unpack(">I", hdr)[0]))
    assert resp.get(2, [0])[0] == 0, (i, resp.get(3))
    receipt = fields(fields(resp[10][0])[6][0])
    seq = receipt.get(1, [0])[0]
    assert seq > last, (i, seq, last)
    last = seq
    assert fields(receipt[3][0])[8][0] == d, "answer %d is not for request %d" % (i, i)
s.close()'

# 200 connections that connect and vanish
# Past max_connections_per_uid the agent may close a connection before the
# half frame is written (it has not reaped the earlier hang-ups yet): EPIPE or
# ECONNRESET is then a correct answer; every connect must still succeed.
check "200 connect-and-vanish clients" hostile '
for i in range(200):
    s = connect(path)
    if i % 2:
        try:
            s.sendall(b"\x00\x00")
        except (BrokenPipeError, ConnectionResetError):
            pass
    s.close()'
check "agent alive after every hostile client" agent_alive
# The agent may still be reaping those 200 hang-ups (they count against
# max_connections_per_uid until it does): sign once it has.
check "signing still works at the end" wait_for 30 sign_still_works
stop_agent
finish
