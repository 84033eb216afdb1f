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
def read_fields(s, _next=read_fields):   # rawclient's, strict: a close is a failure here
    r = _next(s)
    assert r is not None, 'the agent closed the connection'
    return r
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

# ---- provsign_sign_many (tests/integration/sign-many.c) ----
expect_exit 0 "pubkey" cli "$RUNNER_UID" key pubkey --principal ci-release
cp "$T/out" "$T/pub.pem"
chmod 0644 "$T/pub.pem"
expect_exit 0 "log key" cli "$RUNNER_UID" audit log-key
cp "$T/out" "$T/logkey.pem"
chmod 0644 "$T/logkey.pem"
many() {
        as "$RUNNER_UID" "$PROVSIGN_SIGN_MANY" "$@" >"$T/many.out" 2>"$T/many.err"
}
for w in 16 1 64; do
        check "provsign_sign_many: 64 digests, window $w: every signature verifies over its digest, every receipt of its digest under a signed checkpoint" \
                many "$SOCK" ci-release 64 "$w" "$T/pub.pem" "$T/logkey.pem"
        expect_eq "$(tail -1 "$T/many.out")" "signed 64 failed 0" "window $w: all 64 signed"
done
[ -s "$T/many.err" ] && echo "sign-many said: $(head -5 "$T/many.err")"

# ---- provsign sign with several --digest ----
declare -a D
for i in 1 2 3 4 5; do D[i]=$(random_digest); done
expect_exit 0 "sign with five --digest" cli "$RUNNER_UID" sign --principal ci-release \
        -d "sha256:${D[1]}" -d "sha256:${D[2]}" -d "sha256:${D[3]}" -d "sha256:${D[4]}" -d "sha256:${D[5]}"
expect_eq "$(cut -d' ' -f1 "$T/out" | tr '\n' ' ')" "sha256:${D[1]} sha256:${D[2]} sha256:${D[3]} sha256:${D[4]} sha256:${D[5]} " \
        "one line per digest, in the order given"
bad=0
while read -r spec sig; do
        verify_sig "$T/pub.pem" "${spec#sha256:}" "$sig" || bad=$((bad + 1))
done <"$T/out"
expect_eq "$bad" 0 "openssl verifies each line's signature over its digest"

d1=$(random_digest)
expect_exit 0 "one --digest: the output is the signature alone, as before" cli "$RUNNER_UID" sign --principal ci-release -d "sha256:$d1"
check "one --digest: a bare base64 signature" verify_sig "$T/pub.pem" "$d1" "$(cat "$T/out")"

mkdir -m 0777 "$T/receipts"
for i in 1 2 3; do E[i]=$(random_digest); done
expect_exit 0 "--json --receipt-dir with three digests" cli "$RUNNER_UID" sign --principal ci-release --json \
        --receipt-dir "$T/receipts" -d "sha256:${E[1]}" -d "sha256:${E[2]}" -d "sha256:${E[3]}"
cp "$T/out" "$T/multi.json"
expect_eq "$(jq -r .digest "$T/multi.json" | tr '\n' ' ')" "sha256:${E[1]} sha256:${E[2]} sha256:${E[3]} " \
        "--json: one object per line, each naming its digest"
bad=0
for i in 1 2 3; do
        f=$T/receipts/sha256-${E[i]}.json
        [ -f "$f" ] || { bad=$((bad + 1)); continue; }
        "$PROVSIGN_CLI" receipt verify --log-key "$T/logkey.pem" "$f" >"$T/rv" 2>&1 || bad=$((bad + 1))
        grep -i "${E[i]}" "$T/rv" >/dev/null || bad=$((bad + 1))
        sed -n "${i}p" "$T/multi.json" >"$T/line.json"
        "$PROVSIGN_CLI" receipt verify --log-key "$T/logkey.pem" "$T/line.json" >/dev/null 2>&1 || bad=$((bad + 1))
done
expect_eq "$bad" 0 "each receipt file (DIR/sha256-HEX.json) and each JSON line verifies offline, for its digest"

cp "$T/receipts/sha256-${E[2]}.json" "$T/kept.json"
n2=$(random_digest)
expect_exit 5 "--receipt-dir never replaces a receipt: that digest fails (exit 5), the new one is signed" \
        cli "$RUNNER_UID" sign --principal ci-release --receipt-dir "$T/receipts" -d "sha256:${E[2]}" -d "sha256:$n2"
check "the existing receipt is unchanged" cmp -s "$T/kept.json" "$T/receipts/sha256-${E[2]}.json"
check "the other digest was signed and printed" grep "^sha256:$n2 " "$T/out"
check "the other digest's receipt was written" test -f "$T/receipts/sha256-$n2.json"
check "stderr names the digest whose receipt exists" grep "sha256-${E[2]}.json" "$T/err"

expect_exit 3 "several digests for a principal the caller may not use: exit 3" \
        cli "$RUNNER_UID" sign --principal ci-nightly -d "sha384:$(random_digest)$(random_digest | head -c 32)" \
        -d "sha384:$(random_digest)$(random_digest | head -c 32)"
expect_eq "$(grep -c '^PERMISSION_DENIED: sha384:' "$T/err")" 2 "one stderr line per digest, the status name first"
expect_eq "$(wc -c <"$T/out")" 0 "nothing on stdout"

expect_exit 2 "the same digest twice is a usage error" cli "$RUNNER_UID" sign --principal ci-release -d "sha256:$d1" -d "sha256:$d1"
expect_exit 2 "two digest algorithms is a usage error" cli "$RUNNER_UID" sign --principal ci-release \
        -d "sha256:$d1" -d "sha384:$(random_digest)$(random_digest | head -c 32)"
expect_exit 2 "--receipt with several digests is a usage error" cli "$RUNNER_UID" sign --principal ci-release \
        --receipt "$T/r.json" -d "sha256:$d1" -d "sha256:$(random_digest)"

check "agent alive" agent_alive
stop_agent

# ---- rate-limited: some digests refused, the others kept ----
write_config "rate_limit = 5/m"
start_agent
for i in $(seq 1 8); do F[i]=$(random_digest); done
args=()
for i in $(seq 1 8); do args+=(-d "sha256:${F[i]}"); done
expect_exit 3 "eight digests against a limit of 5/m: exit 3" cli "$RUNNER_UID" sign --principal ci-release "${args[@]}"
signed=$(wc -l <"$T/out")
limited=$(grep -c '^RATE_LIMITED: sha256:' "$T/err")
check "some signed, the rest RATE_LIMITED, none lost ($signed + $limited = 8)" test "$signed" -ge 1 -a "$limited" -ge 1 -a $((signed + limited)) = 8
bad=0
while read -r spec sig; do
        verify_sig "$T/pub.pem" "${spec#sha256:}" "$sig" || bad=$((bad + 1))
done <"$T/out"
expect_eq "$bad" 0 "every signature printed verifies"
stop_agent

# ---- the connection dies mid-batch ----
# The agent is killed (SIGKILL) while one provsign_sign_many call of many
# digests is under way: the call returns, every signature it got before
# the connection went is whole and checked, the rest fail as transport
# failures (no refusal, no bad reply), and each received signature's
# entry is in the log the restarted agent opens (durable before its reply).
write_config
start_agent
log_size() { cli "$RUNNER_UID" status --json | jq -r .log_size; }
before=$(log_size)
BIG=${PROVSIGN_TEST_PIPELINE_BIG:-20000}
as "$RUNNER_UID" "$PROVSIGN_SIGN_MANY" --partial "$SOCK" ci-release "$BIG" 32 "$T/pub.pem" "$T/logkey.pem" \
        >"$T/kill.out" 2>"$T/kill.err" &
MANY_PID=$!
grown() { [ "$(log_size)" -ge $((before + 100)) ]; }
check "the batch is under way (the log grew by 100)" wait_for 120 grown
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
AGENT_PID=
wait "$MANY_PID"
rc=$?
expect_eq "$rc" 0 "sign-many --partial: every signature received checks out, the others failed only as transport failures"
[ "$rc" = 0 ] || echo "sign-many said: $(head -5 "$T/kill.err")"
summary=$(tail -1 "$T/kill.out")
echo "after the kill: $summary of $BIG"
got=$(awk '$2 == 0' "$T/kill.out" | wc -l)
lost=$(awk '$2 != 0 && $3 == "-"' "$T/kill.out" | wc -l)
check "some signed before the kill, some cut off by it" test "$got" -ge 1 -a "$lost" -ge 1
expect_eq "$((got + lost))" "$BIG" "every item has a result"
start_agent
after=$(log_size)
maxseq=$(awk '$2 == 0 { print $3 }' "$T/kill.out" | sort -n | tail -1)
check "every received signature's entry survived the kill (highest log_seq $maxseq < log size $after)" test "$maxseq" -lt "$after"
check "agent alive" agent_alive
stop_agent
finish
