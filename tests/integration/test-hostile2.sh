#!/bin/bash
# Hostile neighbours (docs/hardening.md), the agent's side: what a signer
# may put in its audit entry (a media type; one value per annotation key),
# what a flood of refusals may cost (bounded log and stderr lines), and
# what an exhausted descriptor table may cost (nothing lasting).
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent

# signs for ci-release with payload_type ptype and annotations ann
signing() {
        hostile "
def sign_with(ptype=b'', ann=()):
    s = connect(path)
    s.sendall(frame(sign_request('ci-release', os.urandom(32), 1, ptype, ann)))
    return read_response(s)
$1"
}

# ---- payload_type is a media type (RFC 6838) ----
check "payload_type =HYPERLINK(...): INVALID_ARGUMENT naming the media type rule, nothing signed" signing '
st, msg, f = sign_with(b"=HYPERLINK(\"http://x\",\"y\")")
assert st == "INVALID_ARGUMENT" and "media type" in msg and 10 not in f, (st, msg)'
for bad in '+cmd/x' '-x/y' '@SUM(1)/x' 'text' 'text/' '/plain' 'text/plain extra' 'text/pla"in' 'text/plain;' 'text/plain; charset'; do
        check "payload_type '$bad' refused" signing "
st, msg, f = sign_with(b'''$bad''')
assert st == 'INVALID_ARGUMENT' and 'media type' in msg, (st, msg)"
done
for good in 'text/plain' 'application/vnd.in-toto+json' 'application/vnd.provsign.keybundle.v1+json' 'text/plain; charset=utf-8'; do
        check "payload_type '$good' signed" signing "
st, msg, f = sign_with(b'''$good''')
assert st == 'OK' and 10 in f, (st, msg)"
done
check "no payload_type at all: signed" signing '
st, msg, f = sign_with()
assert st == "OK" and 10 in f, (st, msg)'

# ---- one value per annotation key ----
check "two annotations with one key: INVALID_ARGUMENT, nothing signed" signing '
st, msg, f = sign_with(b"text/plain", [(b"git", b"a"), (b"ref", b"main"), (b"git", b"b")])
assert st == "INVALID_ARGUMENT" and "repeats the key" in msg and 10 not in f, (st, msg)'
check "distinct annotation keys: signed" signing '
st, msg, f = sign_with(b"text/plain", [(b"git", b"a"), (b"ref", b"main"), (b"Git", b"b")])
assert st == "OK" and 10 in f, (st, msg)'
check "agent alive" agent_alive

# ---- the agent's files: a config or PIN file others may change or read ----
# start_fails DESCRIPTION MESSAGE config: the agent exits 1 saying MESSAGE.
start_fails() {
        run_agent --config "$3" >"$T/out" 2>"$T/err"
        local rc=$?
        if [ "$rc" = 1 ] && grep -qF -- "$2" "$T/err"; then pass "$1"; else fail "$1: exit $rc, stderr: $(head -c 300 "$T/err")"; fi
}
# (its own state_dir: without the check, the agent would get as far as the log)
mkdir -p "$T/state2"
chown "$AGENT_UID:$AGENT_GID" "$T/state2"
sed "s|^state_dir = .*|state_dir = $T/state2|" "$CONF" > "$T/c2.conf"
chmod 0664 "$T/c2.conf"
start_fails "a group-writable config: refused at start" "is group- or world-writable (mode 0664)" "$T/c2.conf"
chmod 0646 "$T/c2.conf"
start_fails "a world-writable config: refused at start" "is group- or world-writable (mode 0646)" "$T/c2.conf"
cp "$T/tok/pin" "$T/pin2"
chown "$AGENT_UID" "$T/pin2"
sed -i "s|^pin_file = .*|pin_file = $T/pin2|" "$T/c2.conf"
chmod 0644 "$T/c2.conf"
for mode in 0640 0604 0620 0602; do
        chmod "$mode" "$T/pin2"
        start_fails "a PIN file of mode $mode: refused at start" "must be a regular file that only its owner can read or write (mode $mode" "$T/c2.conf"
done
check "the refusals never print the PIN" bash -c "! grep -qF -- \"\$(cat '$T/tok/pin')\" '$T/err'"
check "agent alive after the permission refusals" agent_alive
chmod 0664 "$CONF"
kill -HUP "$AGENT_PID"
for _ in $(seq 1 50); do grep -q "config reload refused" "$T/agent.log" && break; sleep 0.1; done
check "SIGHUP with a group-writable config: reload refused, old policy kept" grep -q "config reload refused.*group- or world-writable" "$T/agent.log"
chmod 0644 "$CONF"
check "signing still works with the old policy" signing '
st, msg, f = sign_with(b"text/plain")
assert st == "OK", (st, msg)'

# ---- every refusal is logged, and no uid can flood the log or
# the journal with them ----
# Uids with no other part in the policy, each in the socket group.
U_GARBAGE=64951 U_BIGFRAME=64952 U_STALL=64953 U_CONNS=64954 U_FLOOD=64955
raw_as() {
        local uid=$1
        shift
        as "$uid" env PYTHONPATH="$SRCDIR/tests/lib" SOCK="$SOCK" python3 -c "
import os, struct, time, socket
from rawclient import *
path = os.environ['SOCK']
$1"
}
check "an undecodable request: INVALID_ARGUMENT" raw_as "$U_GARBAGE" '
s = connect(path)
s.sendall(frame(b"\xff" * 11))
st, msg, _ = read_response(s)
assert st == "INVALID_ARGUMENT", st'
check "an oversized frame: INVALID_ARGUMENT" raw_as "$U_BIGFRAME" '
s = connect(path)
s.sendall(struct.pack(">I", 70000))
st, msg, _ = read_response(s)
assert st == "INVALID_ARGUMENT", st'
check "a half frame: closed at read_timeout (2s)" raw_as "$U_STALL" '
s = connect(path)
s.sendall(struct.pack(">I", 100) + b"\x08")
s.settimeout(10)
assert closed(s)'
check "130 connections of one uid: the ones over max_connections_per_uid (128) are refused" raw_as "$U_CONNS" '
socks = [connect(path) for _ in range(128)]
for s in socks:  # each one answered: the agent holds all 128
    s.sendall(frame(status_request()))
assert all(read_response(s)[0] == "OK" for s in socks)
extra = connect(path)
st, msg, _ = read_response(extra)
assert st == "UNAVAILABLE" and "max_connections_per_uid" in msg, (st, msg)
extra = connect(path)
st, msg, _ = read_response(extra)
assert st == "UNAVAILABLE", st'
lines_before=$(wc -l < "$T/agent.log")
check "a stranger sends 3,000 Signs it may not make, all refused" raw_as "$U_FLOOD" '
s = connect(path)
n = 0
for burst in range(30):
    s.sendall(frame(sign_request("ci-release", b"\x01" * 32)) * 100)
    for _ in range(100):
        st, msg, _ = read_response(s)
        assert st == "PERMISSION_DENIED", (st, msg)
        n += 1
assert n == 3000'
check "the auditor sends 200 Finds without a digest or principal (export.c refuses these)" raw_as "$AUDITOR_UID" '
s = connect(path)
s.sendall(frame(request(21)) * 200)
for _ in range(200):
    st, msg, _ = read_response(s)
    assert st == "INVALID_ARGUMENT" and "find needs" in msg, (st, msg)'
lines_after=$(wc -l < "$T/agent.log")
grown=$((lines_after - lines_before))
check "3,200 refusals of two uids add at most 2 x 20 + 5 stderr lines (added $grown)" test "$grown" -le 45
check "the flooding uid's refusals are on stderr, up to the limit" grep -q "refused Sign from uid $U_FLOOD .*PERMISSION_DENIED.*counted, not logged" "$T/agent.log"
check "so are the Find refusals" grep -q "refused Find from uid $AUDITOR_UID .*INVALID_ARGUMENT" "$T/agent.log"
check "agent alive after the flood" agent_alive

# @END@
stop_agent

check "at shutdown: the summary line counts the suppressed refusals" grep -q "2980 refusals of uid $U_FLOOD not logged individually" "$T/agent.log"
check "... and the Find ones" grep -q "180 refusals of uid $AUDITOR_UID not logged individually" "$T/agent.log"
start_agent
expect_exit 0 "audit export" cli "$AUDITOR_UID" audit export
cp "$T/out" "$T/export.jsonl"
# refused UID TEXT: a REFUSED entry of UID whose bytes contain TEXT
refused() {
        python3 - "$T/export.jsonl" "$@" <<'PY'
import base64, binascii, json, sys
path, uid, text = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
def raw(leaf):
    try:
        return binascii.unhexlify(leaf)
    except (binascii.Error, ValueError):
        return base64.b64decode(leaf)
hits = [e for e in map(json.loads, open(path)) if e.get("event") == "REFUSED" and e.get("uid") == uid and text in raw(e["leaf"])]
sys.exit(0 if hits else 1)
PY
}
count_events() {
        python3 -c 'import json, sys; print(sum(1 for e in map(json.loads, open(sys.argv[1])) if e.get("event") == sys.argv[2] and e.get("uid") == int(sys.argv[3])))' "$T/export.jsonl" "$1" "$2"
}
check "the undecodable request is a REFUSED entry" refused "$U_GARBAGE" "undecodable"
check "the oversized frame is a REFUSED entry" refused "$U_BIGFRAME" "exceeds the 65536-byte limit"
check "the read timeout is a REFUSED entry" refused "$U_STALL" "read timeout"
check "the connection over the per-uid limit is a REFUSED entry" refused "$U_CONNS" "max_connections_per_uid"
expect_eq "$(count_events REFUSED "$U_FLOOD")" 20 "the flood left 20 REFUSED entries of its uid"
expect_eq "$(count_events REFUSED_SUMMARY "$U_FLOOD")" 1 "and one REFUSED_SUMMARY"
stop_agent
finish
