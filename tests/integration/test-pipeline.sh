#!/bin/bash
# Pipelining on one connection (docs/formats.md "Request ids"): the agent
# echoes Request.request_id in every reply frame to that request (refusals
# and streamed replies too), a client that sends no id gets none back (the
# old one-at-a-time protocol), and 64 Sign requests written before any
# reply is read are all answered, each with its own id and a receipt of its
# own digest.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent

raw() {
        as "$RUNNER_UID" env PYTHONPATH="$SRCDIR/tests/lib" SOCK="$SOCK" /usr/bin/python3 -c "
import os, struct, sys
from rawclient import *
path = os.environ['SOCK']
def with_id(req, rid):
    return req + field_varint(25, rid)
def read_fields(s):
    hdr = recv_exact(s, 4)
    assert hdr is not None, 'the agent closed the connection'
    return fields(recv_exact(s, struct.unpack('>I', hdr)[0]))
$1"
}

check "old protocol: a reply to a request without an id carries none" raw '
s = connect(path)
s.sendall(frame(status_request()))
r = read_fields(s)
assert r.get(2, [0])[0] == 0, r
assert 23 not in r, r
'

check "Status with an id: the id comes back (a full 64-bit one too)" raw '
s = connect(path)
for rid in (7, 2**64 - 1, 1):
    s.sendall(frame(with_id(status_request(), rid)))
    r = read_fields(s)
    assert r.get(2, [0])[0] == 0 and r[23] == [rid], (rid, r)
'

check "a refusal carries the id of the request it refuses" raw '
s = connect(path)
s.sendall(frame(with_id(sign_request("ci-nightly", b"\x01" * 48, 2), 4242)))
r = read_fields(s)
assert r[2] == [2] and r[23] == [4242], r   # PERMISSION_DENIED
'

check "a refusal of a frame that is no request carries id 0, not the previous request's" raw '
s = connect(path)
s.sendall(frame(with_id(status_request(), 5)))
assert read_fields(s)[23] == [5]
s.sendall(struct.pack(">I", 70000))
r = read_fields(s)
assert r[2] == [1] and 23 not in r, r   # INVALID_ARGUMENT, no id
'

check "every part of a streamed key bundle carries the id" raw '
s = connect(path)
s.sendall(frame(with_id(request(14, field_varint(2, 1)), 99)))
n = 0
while True:
    r = read_fields(s)
    assert r.get(2, [0])[0] == 0 and r[23] == [99], r
    n += 1
    if not fields(r[16][0]).get(2, [0])[0]:
        break
assert n >= 1
'

check "64 pipelined Sign requests: each answered once, with its id and a receipt of its digest" raw '
import random
s = connect(path)
s.settimeout(120)
base = random.randrange(1, 2**62)
want = {}
batch = b""
for i in range(64):
    d = os.urandom(32)
    want[base + i] = d
    batch += frame(with_id(sign_request("ci-release", d), base + i))
s.sendall(batch)     # all 64 before reading a reply
seen = set()
for i in range(64):
    r = read_fields(s)
    assert r.get(2, [0])[0] == 0, r
    rid = r[23][0]
    assert rid in want and rid not in seen, rid
    seen.add(rid)
    sign = fields(r[10][0])
    leaf = fields(fields(sign[6][0])[3][0])
    assert leaf[8] == [want[rid]], "the receipt of %d is not of its digest" % rid
assert seen == set(want)
'

check "agent alive" agent_alive
stop_agent
finish
