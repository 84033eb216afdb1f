#!/bin/bash
# Concurrency on one connection (max_inflight_per_connection; docs/formats.md
# "Request ids"): Sign requests that carry a request_id are signed
# concurrently and answered in any order, each with its id and a receipt of
# its own digest; requests without an id keep the one-at-a-time protocol
# (answered in order, after what came before them); past
# max_inflight_per_connection the agent reads no more from the connection
# until a slot frees. Orders are checked with a refusal, which the agent
# answers at once on the loop, against Signs, which wait for a worker and a
# group commit: no timing involved.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent

raw() {
        as "$RUNNER_UID" env PYTHONPATH="$SRCDIR/tests/lib" SOCK="$SOCK" /usr/bin/python3 -c "
import os, struct, sys
from rawclient import *
path = os.environ['SOCK']
def sign(rid, d=None):
    return frame(with_id(sign_request('ci-release', d or os.urandom(32)), rid))
def refused(rid):   # ci-nightly is not this uid's: PERMISSION_DENIED, answered on the loop
    return frame(with_id(sign_request('ci-nightly', b'\x01' * 48, 2), rid))
def rid_of(r):
    return r.get(23, [0])[0]
def status_of(r):
    return STATUS[r.get(2, [0])[0]]
def until_closed(s):   # every reply, up to the close
    got = []
    try:
        while (r := read_fields(s)) is not None:
            got.append(r)
    except ConnectionResetError:
        pass
    return got
$1"
}

check "pipelined: a refusal sent after two Signs with ids is answered first (they run concurrently)" raw '
s = connect(path)
s.sendall(sign(1) + sign(2) + refused(3))
order = [read_fields(s) for _ in range(3)]
assert rid_of(order[0]) == 3 and status_of(order[0]) == "PERMISSION_DENIED", order[0]
assert sorted(rid_of(r) for r in order[1:]) == [1, 2], order
assert all(status_of(r) == "OK" for r in order[1:]), order
'

check "one-at-a-time (no ids): 6 pipelined requests answered in the order sent, the refusal in its place" raw '
s = connect(path)
batch = b""
for i in range(6):
    batch += frame(sign_request("ci-nightly", b"\x01" * 48, 2) if i == 3 else sign_request("ci-release", os.urandom(32)))
s.sendall(batch)
sts = [status_of(read_fields(s)) for _ in range(6)]
assert sts == ["OK", "OK", "OK", "PERMISSION_DENIED", "OK", "OK"], sts
'

check "a request without an id waits for the pipelined ones before it, and is answered after them" raw '
s = connect(path)
s.sendall(sign(11) + sign(12) + frame(status_request()))
got = [read_fields(s) for _ in range(3)]
assert [rid_of(r) for r in got[:2]] in ([11, 12], [12, 11]), got
assert rid_of(got[2]) == 0 and 12 in got[2], got[2]   # StatusResponse (field 12)
'

check "32 pipelined Signs: each answered once, with its id and a receipt of its digest" raw '
s = connect(path)
s.settimeout(120)
want = {1000 + i: os.urandom(32) for i in range(32)}
s.sendall(b"".join(sign(rid, d) for rid, d in want.items()))
seen = set()
for _ in range(32):
    r = read_fields(s)
    assert status_of(r) == "OK", r
    rid = rid_of(r)
    assert rid in want and rid not in seen, rid
    seen.add(rid)
    leaf = fields(fields(fields(r[10][0])[6][0])[3][0])
    assert leaf[8] == [want[rid]], rid
'

check "the client shuts its end after 8 pipelined Signs: all 8 replies still come" raw '
import socket
s = connect(path)
s.sendall(b"".join(sign(100 + i) for i in range(8)))
s.shutdown(socket.SHUT_WR)
ids = sorted(rid_of(read_fields(s)) for _ in range(8))
assert ids == list(range(100, 108)), ids
assert read_fields(s) is None   # then the agent closes
'
# A frame the agent cannot take as a request ends the connection, but only
# once the pipelined Signs before it are answered: their signatures are
# logged, so they must reach the client too (they were dropped when the
# connection closed right after the refusal). The refusal comes first
# (answered on the loop), with request_id 0: no id can be read from it.
check "pipelined Signs, then an undecodable frame: refused (id 0), the Signs still answered with their ids, then closed" raw '
s = connect(path)
s.settimeout(120)
s.sendall(sign(21) + sign(22) + frame(b"\xff\xff\xff\xff\xff"))
got = until_closed(s)
assert rid_of(got[0]) == 0 and status_of(got[0]) == "INVALID_ARGUMENT", got
assert b"undecodable" in got[0][3][0], got[0]
assert sorted(rid_of(r) for r in got[1:]) == [21, 22], got
assert all(status_of(r) == "OK" for r in got[1:]), got
'
check "pipelined Signs, then an oversized frame header: refused (id 0), the Signs still answered with their ids, then closed" raw '
s = connect(path)
s.settimeout(120)
s.sendall(sign(31) + sign(32) + struct.pack(">I", 1 << 20) + b"\x00" * 64)
got = until_closed(s)
assert rid_of(got[0]) == 0 and status_of(got[0]) == "INVALID_ARGUMENT", got
assert b"exceeds" in got[0][3][0], got[0]
assert sorted(rid_of(r) for r in got[1:]) == [31, 32], got
assert all(status_of(r) == "OK" for r in got[1:]), got
'
check "agent alive" agent_alive
stop_agent

# max_inflight_per_connection = 2: the third and fourth frames are not read
# until a Sign is answered, so the refusal (4th) comes after a Sign.
write_config "max_inflight_per_connection = 2"
start_agent
check "max_inflight_per_connection = 2: the 4th frame waits for a free slot" raw '
s = connect(path)
s.sendall(sign(1) + sign(2) + sign(3) + refused(4))
got = [read_fields(s) for _ in range(4)]
ids = [rid_of(r) for r in got]
assert sorted(ids) == [1, 2, 3, 4], ids
assert ids[0] in (1, 2), ids
assert status_of(got[ids.index(4)]) == "PERMISSION_DENIED", got
'
stop_agent

write_config "max_inflight_per_connection = 1"
start_agent
check "max_inflight_per_connection = 1: pipelined Signs with ids are answered in order" raw '
s = connect(path)
s.sendall(b"".join(sign(i) for i in range(1, 6)) + refused(6))
ids = [rid_of(read_fields(s)) for _ in range(6)]
assert ids == [1, 2, 3, 4, 5, 6], ids
'
check "agent alive" agent_alive
stop_agent
finish
