#!/bin/bash
# Hostile neighbours, round two (issue 19), the agent's side: what a signer
# may put in its audit entry (a media type; one value per annotation key),
# what a flood of refusals may cost (bounded log and stderr lines), and
# what an exhausted descriptor table may cost (nothing lasting).
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent

hostile() {
        as "$RUNNER_UID" env PYTHONPATH="$SRCDIR/tests/lib" SOCK="$SOCK" python3 -c "
import os, struct, time
from rawclient import *
path = os.environ['SOCK']
def sign_with(ptype=b'', ann=()):
    body = field_bytes(1, b'ci-release') + field_varint(2, 1) + field_bytes(3, os.urandom(32))
    if ptype:
        body += field_bytes(4, ptype)
    for k, v in ann:
        body += field_bytes(5, field_bytes(1, k) + field_bytes(2, v))
    s = connect(path)
    s.sendall(frame(request(10, body)))
    return read_response(s)
$1"
}

# ---- item 6: payload_type is a media type (RFC 6838) ----
check "payload_type =HYPERLINK(...): INVALID_ARGUMENT naming the media type rule, nothing signed" hostile '
st, msg, f = sign_with(b"=HYPERLINK(\"http://x\",\"y\")")
assert st == "INVALID_ARGUMENT" and "media type" in msg and 10 not in f, (st, msg)'
for bad in '+cmd/x' '-x/y' '@SUM(1)/x' 'text' 'text/' '/plain' 'text/plain extra' 'text/pla"in' 'text/plain;' 'text/plain; charset'; do
        check "payload_type '$bad' refused" hostile "
st, msg, f = sign_with(b'''$bad''')
assert st == 'INVALID_ARGUMENT' and 'media type' in msg, (st, msg)"
done
for good in 'text/plain' 'application/vnd.in-toto+json' 'application/vnd.provsign.keybundle.v1+json' 'text/plain; charset=utf-8'; do
        check "payload_type '$good' signed" hostile "
st, msg, f = sign_with(b'''$good''')
assert st == 'OK' and 10 in f, (st, msg)"
done
check "no payload_type at all: signed" hostile '
st, msg, f = sign_with()
assert st == "OK" and 10 in f, (st, msg)'

# ---- item 5: one value per annotation key ----
check "two annotations with one key: INVALID_ARGUMENT, nothing signed" hostile '
st, msg, f = sign_with(b"text/plain", [(b"git", b"a"), (b"ref", b"main"), (b"git", b"b")])
assert st == "INVALID_ARGUMENT" and "repeats the key" in msg and 10 not in f, (st, msg)'
check "distinct annotation keys: signed" hostile '
st, msg, f = sign_with(b"text/plain", [(b"git", b"a"), (b"ref", b"main"), (b"Git", b"b")])
assert st == "OK" and 10 in f, (st, msg)'
check "agent alive" agent_alive

# ---- item 11 (agent): a config or PIN file others may change or read ----
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
check "signing still works with the old policy" hostile '
st, msg, f = sign_with(b"text/plain")
assert st == "OK", (st, msg)'

# @END@
stop_agent
finish
