#!/bin/bash
# The Merkle tree on disk as C2SP tlog-tiles in publish_dir (default
# state_dir/tlog): a log of 70,000 entries made by gen-audit-log comes with
# its tiles; the agent starts from them (replaying nothing) and publishes the
# checkpoint and tiles in the spec's layout after signing; receipts verify;
# an independent reader (Go's golang.org/x/mod/sumdb/tlog, tests/interop/
# tlog-tiles) checks the tree hash, inclusion proofs of every exported entry
# and consistency from an older checkpoint against the published
# checkpoint, and with publish_entries = yes the entry bundles. Tiles deleted -> rebuilt from the log, same root, receipts
# still verify. A flipped byte in a tile the start reads -> the start is
# refused naming it; in a deeper tile -> the proof that reads it fails and
# the agent log names it. kill -9 under signing load, restart: the
# published tiles and checkpoint agree (the Go reader again).
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
PUB=$T/state/tlog

. "$SRCDIR/tests/lib/tlogcheck.sh"

# the published layout for the checkpoint's size: every full tile below it
# and each level's partial tile, of the right length
layout() {
        python3 - "$PUB" <<'PY'
import os, sys
d = sys.argv[1]
size = int(open(d + "/checkpoint").read().split("\n")[1])
def path(L, N, W=256):
    g = []
    while True:
        g.append(N % 1000); N //= 1000
        if N == 0: break
    g.reverse()
    p = "/".join(["x%03d" % x for x in g[:-1]] + ["%03d" % g[-1]])
    return "tile/%d/%s" % (L, p) + ("" if W == 256 else ".p/%d" % W)
L, n = 0, size
while n > 0:
    for N in range(n // 256):
        f = os.path.join(d, path(L, N))
        assert os.path.getsize(f) == 8192, f
    if n % 256:
        f = os.path.join(d, path(L, n // 256, n % 256))
        assert os.path.getsize(f) == 32 * (n % 256), f
    n //= 256; L += 1
tmp = [f for r, _, fs in os.walk(d) for f in fs if f.startswith(".tmp")]
assert not tmp, tmp
print(size)
PY
}

# a log of 70,000 signatures, with its tiles, made by the real writer
gen_audit_log "$T/tok" "$T/state" 70000 2>"$T/gen.err" || fail "gen-audit-log: $(cat "$T/gen.err")"
chown -R "$AGENT_UID:$AGENT_GID" "$T/tok" "$T/state"
# (70,000 signatures after the KEY_CREATE of the log key and of ci-release)
expect_eq "$(layout)" 70002 "gen-audit-log left checkpoint and tiles in the tlog-tiles layout"
cp "$PUB/checkpoint" "$T/gen.checkpoint"

start_agent
check "the start took the tree from the tiles and replayed nothing" \
        grep -q "the tree: 70002 entries from the tiles in $PUB, 0 replayed" "$T/agent.log"
expect_exit 0 "audit log-key" cli "$STRANGER_UID" audit log-key
sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$T/out" > "$T/logkey.pem"

mkdir -p "$T/r"
chmod 0777 "$T/r"
for i in $(seq 1 20); do
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" --json > "$T/r/$i.json" ||
                fail "sign $i"
done
verify_receipts() {
        local bad=0 f
        for f in "$T"/r/*.json; do
                "$PROVSIGN_CLI" receipt verify --log-key "$T/logkey.pem" "$f" >/dev/null 2>&1 || bad=$((bad + 1))
        done
        expect_eq "$bad" 0 "$1"
}
verify_receipts "all 20 receipts verify"
expect_exit 0 "audit checkpoint" cli "$STRANGER_UID" audit checkpoint --json
stop_agent
size=$(layout)
check "after signing and a stop: the published checkpoint covers every entry ($size) in the layout" test "$size" -ge 70021

# the independent reader, over an export of the whole log
start_agent
expect_exit 0 "audit export" cli "$AUDITOR_UID" audit export
cp "$T/out" "$T/export.jsonl"
stop_agent
expect_exit 0 "Go's sumdb/tlog verifies the published tree, every exported entry and consistency from the generator's checkpoint" \
        "$GOCHECK" -export "$T/export.jsonl" -previous "$T/gen.checkpoint" "$PUB"
cat "$T/out"
exported=$(grep -c '"leaf"' "$T/export.jsonl")
check "... all $exported of them" grep -q " $exported exported entries" "$T/out"
cp "$PUB/checkpoint" "$T/before-rebuild.checkpoint"
size=$(sed -n 2p "$PUB/checkpoint")

# the tiles deleted: rebuilt from the log, same tree
rm -rf "$PUB"
start_agent
check "the missing tiles were rebuilt from the log" grep -q "the tree: 0 entries from the tiles in $PUB, $size replayed" "$T/agent.log"
expect_exit 0 "audit export --previous-size $size after the rebuild" cli "$AUDITOR_UID" audit export --previous-size "$size"
cp "$T/out" "$T/export2.jsonl"
check "the rebuilt tree is the same tree: the export verifies against the checkpoint from before the rebuild" \
        "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" --previous "$T/before-rebuild.checkpoint" "$T/export2.jsonl"
verify_receipts "all receipts still verify after the rebuild"
expect_exit 0 "audit proof of an old entry (read from the rebuilt tiles)" cli "$AUDITOR_UID" audit proof --seq 1234
cp "$T/out" "$T/r/old-1234.json"
verify_receipts "... and so does the proof of entry 1234"
stop_agent
expect_exit 0 "Go's sumdb/tlog verifies the rebuilt tiles" "$GOCHECK" -previous "$T/before-rebuild.checkpoint" "$PUB"

# a flipped byte: the last full tile of level 0 is read at start
flip() {
        python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x40]))' "$PUB/$1" "$2"
}
last=$(ls "$PUB"/tile/0/ | grep -v '\.p$' | sort | tail -1)
flip "tile/0/$last" 4000
expect_exit 1 "a flipped byte in tile/0/$last: the agent refuses to start" run_agent --config "$CONF"
check "... naming the tile" grep -q "$PUB/tile/0/$last is damaged" "$T/err"
flip "tile/0/$last" 4000
# in a partial tile: the root of the checkpoint does not match
part=$(cd "$PUB" && ls -d tile/0/*.p/* | head -1)
flip "$part" 5
expect_exit 1 "a flipped byte in $part: the agent refuses to start" run_agent --config "$CONF"
check "... naming it" grep -q "one of .*$part" "$T/err"
flip "$part" 5
# in a tile deep inside: the start is fine, a proof that reads it fails, named in the log
flip "tile/0/010" 100
start_agent
expect_exit 3 "the proof of entry 2600 (in tile/0/010) fails (internal error)" cli "$AUDITOR_UID" audit proof --seq 2600
check "... and the agent log names the tile" grep -q "$PUB/tile/0/010 is damaged" "$T/agent.log"
expect_exit 0 "a proof elsewhere still works" cli "$AUDITOR_UID" audit proof --seq 1000
stop_agent
flip "tile/0/010" 100

# publish_entries = yes: entry bundles for the whole log (a backfill), then
# as it grows; every entry in them hashes to its leaf (the Go reader)
write_config "publish_entries = yes"
start_agent
for i in $(seq 1 5); do
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" >/dev/null || fail "sign $i"
done
stop_agent
size=$(sed -n 2p "$PUB/checkpoint")
expect_exit 0 "Go's sumdb/tlog: the entry bundles hold every entry and hash to the leaves" "$GOCHECK" -entries "$PUB"
check "... all $size of them" grep -q " $size entries in bundles" "$T/out"

# kill -9 under signing load, three times; then the tiles and checkpoint agree
start_agent
mkdir -p "$T/c"
chmod 0777 "$T/c"
for c in $(seq 1 8); do
        as "$RUNNER_UID" python3 "$SRCDIR/tests/lib/signprobe.py" "$SOCK" ci-release "$T/stop" "$T/c/$c.calls" 20 &
done
for run in 1 2 3; do
        sleep "$(python3 -c 'import random; print(round(random.uniform(0.5, 1.5), 2))')"
        kill -KILL "$AGENT_PID"
        wait "$AGENT_PID" 2>/dev/null
        AGENT_PID=
        expect_exit 0 "kill -9 #$run: Go's sumdb/tlog verifies the published tiles and bundles against the published checkpoint" \
                "$GOCHECK" -entries "$PUB"
        start_agent
done
touch "$T/stop"
for j in $(jobs -p); do [ "$j" = "$AGENT_PID" ] || wait "$j"; done
pass "the agent came back after each kill (its start checks the tiles against the published checkpoint)"
stop_agent
expect_exit 0 "after the campaign: the published tiles, entry bundles and checkpoint agree" "$GOCHECK" -entries "$PUB"
expect_eq "$(layout)" "$(python3 - "$T/state/log" <<'PY'
import glob, struct, sys
n = 0
for seg in sorted(glob.glob(sys.argv[1] + "/*.seg")):
    buf = open(seg, "rb").read(); off = 0
    while off + 8 <= len(buf):
        ln = struct.unpack(">I", buf[off:off + 4])[0]; off += 8 + ln; n += 1
print(n)
PY
)" "after a clean stop the published checkpoint covers the whole log"
# What a crash mid-publication can leave (a temporary beside the edge's
# partial tile, a partial of a width never published, a half-written
# checkpoint) is removed at the next start, before anything is served.
psize=$(sed -n 2p "$PUB/checkpoint")
edge=$(python3 -c 'import sys; n = int(sys.argv[1]) // 256; g = []
while True:
    g.append(n % 1000); n //= 1000
    if n == 0: break
g.reverse(); print("/".join(["x%03d" % x for x in g[:-1]] + ["%03d" % g[-1]]))' "$psize")
mkdir -p "$PUB/tile/0/$edge.p"
w=$(( (psize % 256 + 7) % 256 )); [ "$w" = 0 ] && w=1
printf 'half' >"$PUB/tile/0/$edge.p/.tmp-$w"
head -c $((32 * w)) /dev/zero >"$PUB/tile/0/$edge.p/$w"
printf 'half' >"$PUB/.tmp-checkpoint"
chown -R "$AGENT_UID:$AGENT_GID" "$PUB"
start_agent
check "a crash's temporary beside the edge tile is gone after a start" test ! -e "$PUB/tile/0/$edge.p/.tmp-$w"
check "a partial tile of a width never published is gone" test ! -e "$PUB/tile/0/$edge.p/$w"
check "a half-written checkpoint is gone" test ! -e "$PUB/.tmp-checkpoint"
stop_agent
expect_eq "$(layout)" "$(sed -n 2p "$PUB/checkpoint")" "and the layout is whole"
# provsign audit verify --tiles: the published directory offline, read only
sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum; find . | sort) | sha256sum; }
before=$(sums "$PUB")
size=$(sed -n 2p "$PUB/checkpoint")
expect_exit 0 "audit verify --tiles: the published directory verifies" \
        "$PROVSIGN_CLI" audit verify --tiles "$PUB" --log-key "$T/logkey.pem"
check "... saying origin, size and root" grep -Eq "^verified: provsign.test/it size $size root [0-9a-f]{64}$" "$T/out"
check "... and every entry bundle (publish_entries = yes) checked against the leaves" \
        grep -q "^entry bundles: $(( (size + 255) / 256 )) verified, 0 missing$" "$T/out"
expect_exit 0 "audit verify --tiles --previous the generator's checkpoint (70002)" \
        "$PROVSIGN_CLI" audit verify --tiles "$PUB" --log-key "$T/logkey.pem" --previous "$T/gen.checkpoint" --json
check "... consistent, in JSON" python3 -c 'import json, sys; o = json.load(open(sys.argv[1])); assert o["verified"] is True and o["tree_size"] == int(sys.argv[2]) and o["consistent_with_previous_size"] == 70002 and o["entry_bundles"] == {"verified": (int(sys.argv[2]) + 255) // 256, "missing": 0}, o' "$T/out" "$size"
expect_exit 0 "... and --previous the checkpoint from before the rebuild" \
        "$PROVSIGN_CLI" audit verify --tiles "$PUB" --log-key "$T/logkey.pem" --previous "$T/before-rebuild.checkpoint"
expect_eq "$(sums "$PUB")" "$before" "audit verify --tiles wrote nothing into the directory"

V=$T/verify-copy
tiles_fail() { # FILE OFFSET WHAT: a flipped byte at OFFSET of FILE in a copy fails, naming FILE
        rm -rf "$V" && cp -a "$PUB" "$V"
        PUB=$V flip "$1" "$2"
        expect_exit 1 "audit verify --tiles after a flipped byte in $3 $1" \
                "$PROVSIGN_CLI" audit verify --tiles "$V" --log-key "$T/logkey.pem"
        check "... naming it" grep -q "$1" "$T/err"
}
tiles_fail tile/0/010 100 "the full tile"
# (of the checkpoint's tree: a kill -9 may have left newer or stale tiles beside it)
tiles_fail "$(printf 'tile/0/%03d' $((size / 256 - 1)))" 8000 "the last full tile"
tiles_fail tile/1/000 4321 "the level-1 full tile"
c=$size L=0
while [ $((c % 256)) -eq 0 ]; do c=$((c / 256)) L=$((L + 1)); done
tiles_fail "$(printf 'tile/%d/%03d.p/%d' $L $((c / 256)) $((c % 256)))" 5 "the partial tile"
tiles_fail tile/entries/010 1000 "an entry bundle"
tiles_fail tile/entries/010 0 "the first length of an entry bundle"
[ $((size % 256)) -ne 0 ] &&
        tiles_fail "$(printf 'tile/entries/%03d.p/%d' $((size / 256)) $((size % 256)))" 30 "the partial entry bundle"
rm -rf "$V" && cp -a "$PUB" "$V"
rm "$V/tile/entries/011"
expect_exit 0 "audit verify --tiles with an entry bundle deleted: the tree still verifies" \
        "$PROVSIGN_CLI" audit verify --tiles "$V" --log-key "$T/logkey.pem"
check "... and the bundle is counted missing" grep -q "^entry bundles: $(( (size + 255) / 256 - 1 )) verified, 1 missing$" "$T/out"
rm -rf "$V" && cp -a "$PUB" "$V"
rm "$V/tile/0/020"
expect_exit 1 "audit verify --tiles with tile/0/020 deleted" "$PROVSIGN_CLI" audit verify --tiles "$V" --log-key "$T/logkey.pem"
check "... naming it missing" grep -q "tile/0/020 is missing" "$T/err"
rm -rf "$V"

openssl ecparam -name prime256v1 -genkey 2>/dev/null | openssl ec -pubout > "$T/otherkey.pem" 2>/dev/null
expect_exit 1 "audit verify --tiles with another log key" \
        "$PROVSIGN_CLI" audit verify --tiles "$PUB" --log-key "$T/otherkey.pem"
check "... the checkpoint's signature fails" grep -q "FAILED: checkpoint:" "$T/err"
expect_exit 2 "audit verify --tiles with a FILE too is a usage error" \
        "$PROVSIGN_CLI" audit verify --tiles "$PUB" --log-key "$T/logkey.pem" "$T/export.jsonl"
expect_exit 5 "audit verify --tiles of a missing directory is a local error" \
        "$PROVSIGN_CLI" audit verify --tiles "$T/nonexistent" --log-key "$T/logkey.pem"

# a rewritten log: another history signed by the same log key and origin
# (the generator on the same token, a fresh state_dir, another principal)
mkdir -m 0700 "$T/rewritten"
gen_audit_log "$T/tok" "$T/rewritten" 1000 rewriter 2>"$T/gen2.err" ||
        fail "gen-audit-log (rewritten): $(cat "$T/gen2.err")"
expect_exit 0 "the rewritten log's own tiles verify with the same log key" \
        "$PROVSIGN_CLI" audit verify --tiles "$T/rewritten/tlog" --log-key "$T/logkey.pem"
expect_exit 1 "audit verify --tiles --previous a checkpoint of the rewritten log" \
        "$PROVSIGN_CLI" audit verify --tiles "$PUB" --log-key "$T/logkey.pem" --previous "$T/rewritten/tlog/checkpoint"
check "... the history was rewritten" grep -q "history was rewritten" "$T/err"
expect_exit 1 "audit verify --tiles of the (smaller) rewritten log --previous the published checkpoint" \
        "$PROVSIGN_CLI" audit verify --tiles "$T/rewritten/tlog" --log-key "$T/logkey.pem" --previous "$PUB/checkpoint" --json
check "... the log shrank, in JSON" python3 -c 'import json, sys; o = json.load(open(sys.argv[1])); assert o["verified"] is False and "the log shrank" in o["reason"], o' "$T/out"
chown -R "$AGENT_UID:$AGENT_GID" "$T/tok"
finish
