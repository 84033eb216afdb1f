#!/bin/bash
# The key bundle's limits (agent/bundle.c), reached for real with a token
# that holds a few hundred keys:
# - a bundle less than a frame under PROTO_KEY_BUNDLE_MAX (1 MiB, what
#   verifiers accept) is served; once it is over, it is refused with
#   UNAVAILABLE naming its size, the limit and --principal, and one
#   principal's bundle is still served, in parts;
# - a client that reads one frame (in_parts false) is refused a bundle over
#   one frame;
# - at most BUNDLE_MAX_LIVE (4) bundles are signed or sent at once: four
#   readers that stop reading hold four streams, and a fifth request is
#   refused with UNAVAILABLE "4 key bundles are being sent" while signing
#   and other requests go on; once they read, bundles are served again.
# Each refusal is a REFUSED entry of the audit log (request GetKeyBundle,
# status UNAVAILABLE, the message); the agent stays up and exits 0.
#
# The keys: every revocation (auto_rotate_on_revoke) leaves a revoked key
# with its reason in the bundle and makes an active successor; a reason of
# 1024 bytes of '"' and '\' (each escaped to two bytes in the JSON) makes
# a revoked key about 3.4 KB of the envelope.
. "$SRCDIR/tests/lib/common.sh"
setup_test
# (hsm_timeout: 310 key operations on a loaded machine are answered however
# slowly; this is no speed test)
write_config "auto_rotate_on_revoke = yes" "hsm_timeout = 120s"
# the stalled bundle streams must outlive the test's checks (read_timeout
# cuts a connection whose reader stopped reading)
sed -i 's/^read_timeout = .*/read_timeout = 300s/' "$CONF"
cat >> "$CONF" <<CONF

[principal big-1]
uids = $RUNNER_UID

[principal big-2]
uids = $RUNNER_UID

[principal big-3]
uids = $RUNNER_UID

[principal big-4]
uids = $RUNNER_UID
CONF
mkdir -m 0777 "$T/m"
PY="env PYTHONPATH=$SRCDIR/tests/lib python3"
LIMIT=$((1024 * 1024))          # PROTO_KEY_BUNDLE_MAX
PART=$((64 * 1024 - 1024))      # BUNDLE_PART: PROTO_FRAME_MAX - 1024
start_agent

# grow PRINCIPAL N: a rotation, then N revocations (each with a successor)
grow() {
        as "$OPERATOR_UID" $PY - "$SOCK" "$1" "$2" > "$T/grow-$1.out" 2>&1 <<'PY'
import struct, sys
from rawclient import *
sock, principal, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
reason = b'"\\' * 512
s = connect(sock); s.settimeout(120)
def key_change(payload):
    """a RotateKey or RevokeKey; the principal's active key afterwards"""
    s.sendall(frame(payload))
    resp = fields(recv_exact(s, struct.unpack(">I", recv_exact(s, 4))[0]))
    st = resp.get(2, [0])[0]
    assert st == 0, (STATUS[st], resp.get(3, [b""])[0])
    return fields(fields(resp[17][0])[2][0])[1][0]   # key_change.active.keyid
k = key_change(request(17, field_bytes(1, principal.encode())))
for i in range(n):
    k = key_change(request(18, field_bytes(1, k) + field_bytes(2, reason)))
print("%s: %d revocations" % (principal, n))
PY
}
# ---- a few hundred keys: big-1..big-4 revoked 73 times each, at once
# (each revocation adds about 3.4 KB to the envelope) ----
for p in big-1 big-2 big-3 big-4; do
        grow "$p" 73 &
        eval "G_${p#big-}=\$!"
done
for p in big-1 big-2 big-3 big-4; do
        eval "wait \"\$G_${p#big-}\"" || fail "revoking $p's keys: $(tail -3 "$T/grow-$p.out")"
done
[ "$FAILURES" = 0 ] || { finish; exit 1; }

# ---- the whole bundle, less than a frame under 1 MiB: served ----
expect_exit 0 "the whole bundle is served" cli "$RUNNER_UID" key bundle
cp "$T/out" "$T/under.json"
UNDER_LEN=$(stat -c %s "$T/under.json")
check "... $UNDER_LEN bytes: under 1 MiB by less than a frame" \
        test "$UNDER_LEN" -le "$LIMIT" -a "$UNDER_LEN" -gt $((LIMIT - PART))
check "... with the 292 revoked keys, their long reasons, one active key of each principal" \
        python3 - "$T/under.json" <<'PY'
import base64, json, sys
env = json.load(open(sys.argv[1]))
assert env["payloadType"] == "application/vnd.provsign.keybundle.v1+json", env["payloadType"]
keys = json.loads(base64.b64decode(env["payload"]))["keys"]
big = ["big-%d" % i for i in range(1, 5)]
n = {p: sum(k["principal"] == p and k["state"] == "revoked" and k["reason"] == '"\\' * 512 for k in keys) for p in big}
assert n == {p: 73 for p in big}, n
active = {p: sum(k["principal"] == p and k["state"] == "active" for k in keys) for p in big}
assert active == {p: 1 for p in big}, active
PY
# Four stalled streams need a bundle the socket buffers cannot hold: the
# agent produces the next part only when the previous one is written, so a
# bundle that fits in the buffers is finished before a fifth request comes.
# (an AF_UNIX stream socket queues at most its send buffer, wmem_default
# here, counted with overhead; the agent holds one more part in hand)
WMEM=$(cat /proc/sys/net/core/wmem_default)
check "the bundle ($UNDER_LEN bytes) is more than the agent's socket send buffer ($WMEM bytes) and 3 parts" \
        test "$UNDER_LEN" -gt $((WMEM + 3 * PART))

# ---- four whole bundles at once, a fifth refused ----
as "$RUNNER_UID" $PY - "$SOCK" "$T/m/live" <<'PY' > "$T/live.out" 2>&1 &
import json, os, socket, struct, sys, time
from rawclient import *
sock, m = sys.argv[1], sys.argv[2]
req = frame(request(14, field_varint(2, 1)))   # GetKeyBundle{in_parts}
streams = []
for i in range(4):
    s = connect(sock); s.settimeout(120); s.sendall(req)
    assert s.recv(1, socket.MSG_PEEK), "bundle %d did not start" % i   # signed, its first part sent
    streams.append(s)
st, msg, _ = call(sock, req[4:])
open(m + ".fifth", "w").write("%s %s" % (st, msg))
while not os.path.exists(m + ".go"): time.sleep(0.05)
def read_all(s):
    parts = []
    while True:
        resp = fields(recv_exact(s, struct.unpack(">I", recv_exact(s, 4))[0]))
        assert resp.get(2, [0])[0] == 0, resp
        body = fields(resp[16][0])
        parts.append(body[1][0].decode())
        if not body.get(2, [0])[0]:
            return json.loads("".join(parts)), len(parts)
sizes = []
for s in streams:
    env, n = read_all(s)
    assert env["payloadType"] == "application/vnd.provsign.keybundle.v1+json" and n > 4, n
    sizes.append(n)
open(m + ".read", "w").write(" ".join(map(str, sizes)))
# all four done: a bundle is served again
s = connect(sock); s.settimeout(120); s.sendall(req)
env, n = read_all(s)
open(m + ".after", "w").write("%d" % n)
PY
LIVE=$!
check "four bundle streams stalled, a fifth request answered" wait_for 120 test -s "$T/m/live.fifth"
expect_eq "$(cat "$T/m/live.fifth")" "UNAVAILABLE 4 key bundles are being sent; try again later" \
        "the fifth bundle at once is refused: UNAVAILABLE \"4 key bundles are being sent\""
expect_exit 3 "the CLI is refused too, meanwhile" cli "$STRANGER_UID" key bundle --principal ci-release
expect_stderr_prefix "UNAVAILABLE: 4 key bundles are being sent; try again later" "... with the same answer"
expect_exit 0 "signing works while four bundles wait on readers that do not read" \
        cli "$RUNNER_UID" sign --principal big-2 --digest "sha256:$(random_digest)"
expect_exit 0 "status answers meanwhile" cli "$STRANGER_UID" status
touch "$T/m/live.go"
wait "$LIVE" || fail "the bundle readers: $(tail -5 "$T/live.out")"
check "once read, the four stalled bundles were whole ($(cat "$T/m/live.read" 2>/dev/null) parts)" \
        test "$(wc -w < "$T/m/live.read" 2>/dev/null)" = 4
check "then a bundle is served again ($(cat "$T/m/live.after" 2>/dev/null) parts)" test -s "$T/m/live.after"
expect_exit 0 "and the CLI gets one" cli "$STRANGER_UID" key bundle --principal ci-release

# ---- 20 revocations more: the whole bundle is over 1 MiB, refused
# before signing ----
grow big-1 20 || fail "revoking big-1's keys: $(tail -3 "$T/grow-big-1.out")"
expect_exit 3 "the whole bundle is refused" cli "$RUNNER_UID" key bundle -o "$T/m/all.json"
expect_stderr_prefix "UNAVAILABLE" "... with UNAVAILABLE"
ALL_MSG=$(sed -n 's/^UNAVAILABLE: //p' "$T/err" | head -1)
ALL_LEN=$(sed -n 's/^the key bundle (\([0-9]*\) bytes) is over the limit of verifiers .*/\1/p' <<<"$ALL_MSG")
expect_eq "$ALL_MSG" "the key bundle ($ALL_LEN bytes) is over the limit of verifiers ($LIMIT bytes); ask for one principal's keys (provsign key bundle --principal P)" \
        "... naming its size, the 1 MiB limit and --principal"
check "... a size over 1 MiB ($ALL_LEN bytes)" test "${ALL_LEN:-0}" -gt "$LIMIT"
check "... and no file written" test ! -e "$T/m/all.json"

# ---- one principal's bundle: still served, in parts ----
expect_exit 0 "big-1's bundle alone is served" cli "$RUNNER_UID" key bundle --principal big-1
cp "$T/out" "$T/big-1.json"
check "... with its keys only, 93 of them revoked, one active" python3 - "$T/big-1.json" <<'PY'
import base64, json, sys
keys = json.loads(base64.b64decode(json.load(open(sys.argv[1]))["payload"]))["keys"]
assert all(k["principal"] == "big-1" for k in keys)
assert sum(k["state"] == "revoked" for k in keys) == 93
assert sum(k["state"] == "active" for k in keys) == 1
PY

# ---- a client that reads one frame (in_parts false) ----
check "GetKeyBundle without in_parts: big-1's bundle is over one frame; ci-release's fits in one" \
        as "$RUNNER_UID" $PY - "$SOCK" "$PART" "$T/m/one-frame" <<'PY'
import re, sys
from rawclient import *
sock, part = sys.argv[1], int(sys.argv[2])
st, msg, _ = call(sock, request(14, field_bytes(1, b"big-1")))
open(sys.argv[3], "w").write(msg)
m = re.fullmatch(r"the key bundle \((\d+) bytes\) is over one frame, and this client reads no more \((\d+) bytes\); "
                 r"ask for one principal's keys \(provsign key bundle --principal P\)", msg)
assert st == "UNAVAILABLE" and m and int(m.group(1)) > part and int(m.group(2)) == part, (st, msg)
st, msg, f = call(sock, request(14, field_bytes(1, b"ci-release")))
assert st == "OK" and 16 in f, (st, msg, f)
PY

# ---- the refusals are in the audit log ----
audit_refused() {
        python3 - "$T/export.jsonl" "$1" "$2" <<'PY'
import base64, json, sys
sys.path.insert(0, __import__("os").environ["SRCDIR"] + "/tests/lib")
from rawclient import fields
path, uid, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
hits = 0
for e in map(json.loads, open(path)):
    if e.get("event") != "REFUSED" or e.get("uid") != uid:
        continue
    f = fields(base64.b64decode(e["leaf"]))   # AuditEntry: request 13, message 12
    if f.get(13, [b""])[0] == b"GetKeyBundle" and f.get(12, [b""])[0].decode() == msg:
        assert e["status"] == "UNAVAILABLE", e
        hits += 1
sys.exit(0 if hits == 1 else "%d entries" % hits)
PY
}
# A refusal's entry is appended after its reply and committed with the next
# group: export until the last refusal (the one-frame one) is in.
exported() {
        cli "$AUDITOR_UID" audit export >/dev/null 2>&1 && cp "$T/out" "$T/export.jsonl" &&
                audit_refused "$RUNNER_UID" "$(cat "$T/m/one-frame")" >/dev/null 2>&1
}
wait_for 60 exported || true   # the checks below say what is missing
expect_exit 0 "audit export" cli "$AUDITOR_UID" audit export
cp "$T/out" "$T/export.jsonl"
check "the audit log has the refusal of the whole bundle (REFUSED GetKeyBundle UNAVAILABLE, its message)" \
        audit_refused "$RUNNER_UID" "$ALL_MSG"
check "... of the one-frame bundle" audit_refused "$RUNNER_UID" "$(cat "$T/m/one-frame")"
check "... of the fifth bundle at once" audit_refused "$RUNNER_UID" "4 key bundles are being sent; try again later"
check "... and of the CLI's meanwhile" audit_refused "$STRANGER_UID" "4 key bundles are being sent; try again later"

check "the agent is still up" agent_alive
stop_agent
finish
