#!/bin/bash
# Retention that keeps the tree (issue 15 item 4, docs/log-tiles.md
# "Retention"): a log made by gen-audit-log plus real signatures with their
# receipts, split into a closed segment and an open one; `provsign audit
# purge --before` (operator) replaces the closed segment's entry bodies by
# stubs that keep their leaf hashes: the known digests are gone from the
# segment files, key events stay, a PURGE entry is logged, the export marks
# the purged entries and still verifies (also against a checkpoint from
# before the purge), the tiles verify, the kept receipts verify, the agent
# restarts and signs. A non-operator's purge is refused. retain_entries = 1s
# purges by itself at start. The purge also removes the purged entries' rows
# from the index and rewrites the published entry bundles
# (publish_entries = yes) with the stubs.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config "publish_entries = yes"
PUB=$T/state/tlog
LOG=$T/state/log

# the independent reader of the published directory (Go: GOCHECK)
. "$SRCDIR/tests/lib/tlogcheck.sh"

gen_audit_log "$T/tok" "$T/state" 2000 2>"$T/gen.err" || fail "gen-audit-log: $(cat "$T/gen.err")"
chown -R "$AGENT_UID:$AGENT_GID" "$T/tok" "$T/state"

. "$SRCDIR/tests/lib/retention.sh"

start_agent
expect_exit 0 "audit log-key" cli "$STRANGER_UID" audit log-key
sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$T/out" > "$T/logkey.pem"
mkdir -p "$T/r"
chmod 0777 "$T/r"
digests=()
for i in 1 2 3; do
        d=$(random_digest)
        digests+=("$d")
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" --json > "$T/r/$i.json" || fail "sign $i"
done
expect_exit 0 "audit checkpoint before the purge" cli "$STRANGER_UID" audit checkpoint --json
python3 -c 'import json, sys; sys.stdout.write(json.load(open(sys.argv[1]))["checkpoint"])' "$T/out" > "$T/before.checkpoint"
size0=$(sed -n 2p "$T/before.checkpoint")
stop_agent

cut=$(split_log)
check "the log is in two segments (the second from entry $cut)" test "$(ls "$LOG"/*.seg | wc -l)" = 2
check "the signed digest is in the segments before the purge" has_bytes "${digests[0]}"
check "... and in the published entry bundles" in_bundles "${digests[0]}"
rows0=$(index_rows "SELECT count(*) FROM digests WHERE seq < $cut")
check "the index has digest rows for the closed segment ($rows0)" test "$rows0" -ge 2000
# every entry of the closed segment older than the purge's time
t0=$(date +%s)
wait_for 10 test "$(date +%s)" -gt "$t0"
before=$(date -u +%Y-%m-%dT%H:%M:%SZ)

start_agent
expect_exit 3 "a runner may not purge" cli "$RUNNER_UID" audit purge --before "$before"
expect_exit 3 "an auditor may not purge" cli "$AUDITOR_UID" audit purge --before "$before"
check "... and nothing was purged" has_bytes "${digests[0]}"
expect_exit 2 "purge without --before" cli "$OPERATOR_UID" audit purge
expect_exit 3 "purge --before a future time" cli "$OPERATOR_UID" audit purge --before 2999-01-01T00:00:00Z
expect_exit 0 "the operator purges" cli "$OPERATOR_UID" audit purge --before "$before" --json
purged=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["purged"])' "$T/out")
through=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["through_seq"])' "$T/out")
cat "$T/out"
check "entries were purged ($purged, through seq $through)" test "$purged" -ge 2000
expect_eq "$through" "$((cut - 1))" "through the last entry of the closed segment"
for d in "${digests[@]}"; do
        check "digest ${d:0:12}... is gone from the segment files" no_bytes "$d"
done
expect_exit 0 "a second purge finds nothing more" cli "$OPERATOR_UID" audit purge --before "$before" --json
expect_eq "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["purged"])' "$T/out")" 0 "... (purged 0)"

expect_exit 0 "audit export after the purge" cli "$AUDITOR_UID" audit export --previous-size "$size0"
cp "$T/out" "$T/export.jsonl"
check "purged entries are marked, with their leaf hash and no leaf" python3 - "$T/export.jsonl" "$purged" <<'PY'
import json, sys
es = [json.loads(l) for l in open(sys.argv[1]) if '"seq"' in l]
p = [e for e in es if e.get("purged")]
assert len(p) == int(sys.argv[2]), (len(p), sys.argv[2])
assert all(len(e["leaf_hash"]) == 64 and "leaf" not in e for e in p)
assert [e.get("event") for e in es[:2]] == ["KEY_CREATE", "KEY_CREATE"], "key events kept"
purge = [e for e in es if e.get("event") == "PURGE"]
assert len(purge) == 1 and purge[0]["uid"] is not None, purge
PY
check "audit verify passes on the purged export, consistent with the checkpoint from before the purge" \
        "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" --previous "$T/before.checkpoint" "$T/export.jsonl"
expect_exit 0 "a filtered export over the purged range" cli "$AUDITOR_UID" audit export --since 2000-01-01T00:00:00Z
cp "$T/out" "$T/filtered.jsonl"
check "... verifies" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/filtered.jsonl"
check "... and marks the purged entries" grep -q '"purged": *true' "$T/filtered.jsonl"
for f in "$T"/r/*.json; do
        check "receipt $(basename "$f") from before the purge verifies" \
                "$PROVSIGN_CLI" receipt verify --log-key "$T/logkey.pem" "$f"
done
expect_exit 0 "find of a purged digest" cli "$AUDITOR_UID" audit find --digest "sha256:${digests[0]}"
check "... finds nothing" test ! -s "$T/out"
stop_agent
python3 -c 'import json, sys
print(",".join(str(json.loads(l)["seq"]) for l in open(sys.argv[1]) if "\"purged\": true" in l.replace("\"purged\":true", "\"purged\": true")))' \
        "$T/export.jsonl" >"$T/purged.seqs"
expect_eq "$(index_rows "SELECT count(*) FROM digests WHERE seq IN ($(cat "$T/purged.seqs"))")" 0 \
        "the index has no digest rows of the purged entries left"
expect_eq "$(index_rows "SELECT count(*) FROM entries WHERE seq IN ($(cat "$T/purged.seqs")) AND (principal IS NOT NULL OR keyid IS NOT NULL)")" 0 \
        "... nor their principal or key id"
expect_eq "$(index_rows "SELECT count(*) FROM entries WHERE seq < $cut")" "$cut" "... and still locates every entry"
for d in "${digests[@]}"; do
        check "digest ${d:0:12}... is gone from the published entry bundles" not_in_bundles "$d"
done
check "the published bundles hold the stubs (every purged entry's, as the segments do)" python3 - "$PUB" "$T/purged.seqs" <<'PY'
import os, sys
pub, purged = sys.argv[1], set(int(x) for x in open(sys.argv[2]).read().split(","))
size = int(open(os.path.join(pub, "checkpoint")).read().split("\n")[1])
def path(n, w):
    g = []
    while True:
        g.append(n % 1000); n //= 1000
        if n == 0: break
    g.reverse()
    p = "tile/entries/" + "/".join(["x%03d" % x for x in g[:-1]] + ["%03d" % g[-1]])
    return p + (".p/%d" % w if w < 256 else "")
def varint(b, i):
    v = s = 0
    while True:
        v |= (b[i] & 0x7f) << s; s += 7; i += 1
        if not b[i - 1] & 0x80: return v, i
stubs = set()
for n in range((size + 255) // 256):
    w = min(256, size - 256 * n)
    b, i = open(os.path.join(pub, path(n, w)), "rb").read(), 0
    while i < len(b):
        ln = b[i] << 8 | b[i + 1]; e = b[i + 2:i + 2 + ln]; i += 2 + ln
        j, f = 0, {}
        for _ in range(3):
            tag, j = varint(e, j)
            f[tag >> 3], j = varint(e, j)
        if f.get(3) == 11:
            stubs.add(f[1])
assert stubs == purged, (len(stubs), len(purged))
PY
check "audit verify --tiles passes (the rewritten bundles' stubs hash to their leaves)" \
        "$PROVSIGN_CLI" audit verify --tiles "$PUB" --log-key "$T/logkey.pem" --previous "$T/before.checkpoint"
expect_exit 0 "Go's sumdb/tlog reads the purged directory: tiles, bundles, consistency with the checkpoint from before" \
        "$GOCHECK" -entries -previous "$T/before.checkpoint" "$PUB"
check "... every bundle entry its leaf or a stub carrying it ($purged stubs)" grep -q "($purged purged stubs)" "$T/out"
cp "$PUB/checkpoint" "$T/purged.checkpoint"

# restart with the tiles and the index removed: both rebuilt from the
# segments, stubs included (a stub gives its leaf hash), the same tree
rm -rf "$PUB" "$T/state/index.sqlite"*
start_agent
check "the tiles were rebuilt from the purged log" grep -q "the tree: 0 entries from the tiles in $PUB" "$T/agent.log"
expect_exit 0 "audit proof of a purged entry" cli "$AUDITOR_UID" audit proof --seq 5 --json
check "... whose leaf is its stub (event ENTRY_PURGED = 11)" python3 - "$T/out" <<'PY'
import base64, json, sys
o = json.load(open(sys.argv[1]))
leaf = base64.b64decode((o.get("receipt") or o)["leaf"])
def varint(b, i):
    v = s = 0
    while True:
        v |= (b[i] & 0x7f) << s; s += 7; i += 1
        if not b[i - 1] & 0x80: return v, i
i, fields = 0, {}
for _ in range(3):
    tag, i = varint(leaf, i)
    fields[tag >> 3], i = varint(leaf, i)
assert fields.get(1) == 5 and fields.get(3) == 11, fields
PY
d=$(random_digest)
expect_exit 0 "signing after the restart" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" --json
cp "$T/out" "$T/r/after.json"
expect_exit 0 "find of a digest signed after the purge" cli "$AUDITOR_UID" audit find --digest "sha256:$d"
check "... finds it" grep -q "$d" "$T/out"
expect_exit 0 "audit export after the restart" cli "$AUDITOR_UID" audit export --previous-size "$size0"
check "... verifies: the rebuilt tree is the tree from before the purge" \
        "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" --previous "$T/before.checkpoint" "$T/out"
expect_exit 0 "export from the checkpoint published after the purge" \
        cli "$AUDITOR_UID" audit export --previous-size "$(sed -n 2p "$T/purged.checkpoint")"
check "... verifies against it" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" --previous "$T/purged.checkpoint" "$T/out"
stop_agent

# retain_entries: the newest signatures in a closed segment, older than 1s
cut2=$(split_log)
check "the signature after the purge is in the segments" has_bytes "$d"
t0=$(date +%s)
wait_for 10 test "$(date +%s)" -gt "$((t0 + 1))"
write_config "retain_entries = 1s"
start_agent
check "retain_entries purged at start" wait_for 60 grep -q "purged .* entries through seq $((cut2 - 1)) .*(retain_entries)" "$T/agent.log"
check "... the signature after the first purge is gone from the segments" no_bytes "$d"
expect_exit 0 "audit export after retain_entries" cli "$AUDITOR_UID" audit export --previous-size "$size0"
check "... verifies" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" --previous "$T/before.checkpoint" "$T/out"
check "... with a second PURGE entry by retain_entries" python3 - "$T/out" <<'PY'
import json, sys
es = [json.loads(l) for l in open(sys.argv[1]) if '"seq"' in l]
assert sum(1 for e in es if e.get("event") == "PURGE") == 2
PY
check "the receipt made after the first purge still verifies" \
        "$PROVSIGN_CLI" receipt verify --log-key "$T/logkey.pem" "$T/r/after.json"
stop_agent
finish
