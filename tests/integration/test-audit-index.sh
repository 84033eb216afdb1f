#!/bin/bash
# The log's index on disk (agent/index.c, docs/log-index.md) on a real agent and
# token: a few hundred signatures of two principals and two keys of one;
# find by digest, annotation digest, principal, key and time window returns
# exactly the seqs the full export says; index.sqlite deleted, or replaced
# by garbage -> the agent rebuilds it and answers the same, with the same
# key state (the registry comes from the indexed key events); filtered
# (sparse) exports verify with `provsign audit verify`, and tampered ones
# fail at the entry that was changed.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent
PY="env PYTHONPATH=$SRCDIR/tests/lib python3"

expect_exit 0 "audit log-key" cli "$STRANGER_UID" audit log-key
sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$T/out" > "$T/logkey.pem"

# sign COUNT digests for PRINCIPAL as UID over the raw protocol (one
# process, not one per signature), with annotation source=sha256:<digest+1>
# every 7th.
sign_many() {
        local uid=$1 principal=$2 count=$3 alg=$4
        as "$uid" env PYTHONPATH="$SRCDIR/tests/lib" python3 - "$SOCK" "$principal" "$count" "$alg" <<'PY' ||
import os, sys, rawclient
sock, principal, count, alg = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(count):
    d = os.urandom(32 if alg == 1 else 48)
    status, msg = rawclient.call(sock, rawclient.sign_request(principal, d, alg))[:2]
    assert status == "OK", (status, msg)
PY
                fail "signing $count for $principal"
}
sign_many "$RUNNER_UID" ci-release 150 1
sign_many "$RUNNER2_UID" ci-nightly 80 2
# annotated signatures through the CLI (find matches annotation digests)
for i in 1 2 3; do
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" \
                -a "source=sha256:$(random_digest)" >/dev/null || fail "annotated sign $i"
done
expect_exit 0 "key rotate ci-release" cli "$OPERATOR_UID" key rotate --principal ci-release
sign_many "$RUNNER_UID" ci-release 70 1
sleep 1.1 # a second boundary inside the log, for the time window
sign_many "$RUNNER2_UID" ci-nightly 20 2

expect_exit 0 "full export" cli "$AUDITOR_UID" audit export
cp "$T/out" "$T/full.jsonl"

# Queries and their expected seqs, from the full export: QUERIES lines of
# "name|expected seqs|find/export options".
$PY - "$T/full.jsonl" > "$T/queries" <<'PY' || fail "cannot derive the queries"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()[:-1]]
signs = [e for e in lines if e["event"] == "SIGN"]
def out(name, seqs, opts):
    print(name + "|" + " ".join(map(str, seqs)) + "|" + opts)
e = signs[17]
out("digest", [e["seq"]], "--digest " + e["digest"])
e = signs[-5]
out("digest sha384", [e["seq"]], "--digest " + e["digest"])
ann = [e for e in lines if e["annotations"]]
assert len(ann) == 3, ann
src = ann[1]["annotations"]["source"]
out("annotation digest", [ann[1]["seq"]], "--digest " + src)
for p in ("ci-release", "ci-nightly"):
    out("principal " + p, [e["seq"] for e in lines if e["principal"] == p], "--principal " + p)
keys = sorted({e["keyid"] for e in lines if e["principal"] == "ci-release" and e["keyid"]})
assert len(keys) == 2, keys
for k in keys:
    out("key " + k[:8], [e["seq"] for e in lines if e["keyid"] == k], "--key " + k)
# a time window: from the 40th signature of the second batch's key to the
# second before the last sleep
t0, t1 = signs[40]["time"], signs[200]["time"]
out("principal + time window", [e["seq"] for e in lines if e["principal"] == "ci-release" and t0 <= e["time"] <= t1],
    "--principal ci-release --since " + t0 + " --until " + t1)
k = keys[0]
out("key + principal + since", [e["seq"] for e in lines if e["keyid"] == k and e["time"] >= t0],
    "--principal ci-release --key " + k + " --since " + t0)
out("nobody", [], "--principal nobody")
PY
check "the queries are derived ($(wc -l < "$T/queries"))" test "$(wc -l < "$T/queries")" = 10

# run_queries TAG: every query through find, compared with the expected seqs.
run_queries() {
        local tag=$1 name want opts got
        while IFS='|' read -r name want opts; do
                # shellcheck disable=SC2086
                if ! cli "$AUDITOR_UID" audit find $opts > "$T/find.out" 2> "$T/find.err"; then
                        fail "$tag: find $name: $(cat "$T/find.err")"
                        continue
                fi
                got=$(python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["seq"]) for l in open(sys.argv[1])))' "$T/find.out")
                if [ "$got" = "$want" ]; then
                        pass "$tag: find $name returns exactly its $(echo $want | wc -w) entries"
                else
                        fail "$tag: find $name: got [$got], want [$want]"
                fi
        done < "$T/queries"
}
run_queries "live index"

# filtered exports verify; the seqs are those of find
export_check() {
        local tag=$1 name want opts
        while IFS='|' read -r name want opts; do
                # shellcheck disable=SC2086
                cli "$AUDITOR_UID" audit export $opts > "$T/sparse.jsonl" 2> "$T/find.err" ||
                        { fail "$tag: export $name: $(cat "$T/find.err")"; continue; }
                got=$(python3 -c '
import json, sys
l = [json.loads(x) for x in open(sys.argv[1]).read().splitlines()]
assert l[0]["sparse"] is True and l[-1] == {"end": True, "entries": len(l) - 2}, (l[0], l[-1])
print(" ".join(str(o["seq"]) for o in l[1:-1]))' "$T/sparse.jsonl") || { fail "$tag: export $name: not a sparse export"; continue; }
                [ "$got" = "$want" ] || { fail "$tag: export $name: got [$got], want [$want]"; continue; }
                if "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/sparse.jsonl" > "$T/verify.out" 2>&1; then
                        pass "$tag: the filtered export '$name' verifies"
                else
                        fail "$tag: filtered export $name does not verify: $(cat "$T/verify.out")"
                fi
        done < "$T/queries"
}
export_check "live index"

# --from-seq/--to-seq with a filter
expect_exit 0 "export --principal ci-nightly --from-seq 100 --to-seq 260" \
        cli "$AUDITOR_UID" audit export --principal ci-nightly --from-seq 100 --to-seq 260
cp "$T/out" "$T/range.jsonl"
check "only ci-nightly entries of 100..260" python3 -c '
import json, sys
l = [json.loads(x) for x in open(sys.argv[1]).read().splitlines()][1:-1]
full = [json.loads(x) for x in open(sys.argv[2]).read().splitlines()][:-1]
want = [e["seq"] for e in full if e["principal"] == "ci-nightly" and 100 <= e["seq"] <= 260]
assert [e["seq"] for e in l] == want and want, ([e["seq"] for e in l], want)' "$T/range.jsonl" "$T/full.jsonl"
expect_exit 0 "the range's filtered export verifies" "$PROVSIGN_CLI" audit verify --json --log-key "$T/logkey.pem" "$T/range.jsonl"
check "its summary says sparse" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert s["verified"] is True and s["sparse"] is True and s["entries"] > 0, s' "$T/out"

# tampering with a filtered export
tamper() {
        local what=$1 code=$2
        python3 -c "$code" "$T/range.jsonl" "$T/bad.jsonl" || { fail "cannot tamper ($what)"; return; }
        if "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/bad.jsonl" > "$T/verify.out" 2>&1; then
                fail "a filtered export with $what verifies"
        else
                pass "a filtered export with $what fails: $(grep FAILED "$T/verify.out" | head -1)"
        fi
}
tamper "a leaf's digest flipped (fields re-derived)" '
import base64, json, sys, subprocess
l = open(sys.argv[1]).read().splitlines()
o = json.loads(l[3])
leaf = bytearray(base64.b64decode(o["leaf"]))
d = bytes.fromhex(o["digest"].split(":")[1])
i = leaf.find(d); leaf[i] ^= 1
o["leaf"] = base64.b64encode(bytes(leaf)).decode()
o["digest"] = o["digest"].split(":")[0] + ":" + bytes(leaf[i:i + len(d)]).hex()
l[3] = json.dumps(o, separators=(",", ":"))
open(sys.argv[2], "w").write("\n".join(l) + "\n")'
tamper "an entry removed" '
import json, sys
l = open(sys.argv[1]).read().splitlines()
del l[2]
open(sys.argv[2], "w").write("\n".join(l) + "\n")'
tamper "a proof hash changed" '
import json, sys, base64
l = open(sys.argv[1]).read().splitlines()
o = json.loads(l[2])
h = bytearray(base64.b64decode(o["inclusion_proof"][0])); h[0] ^= 1
o["inclusion_proof"][0] = base64.b64encode(bytes(h)).decode()
l[2] = json.dumps(o, separators=(",", ":"))
open(sys.argv[2], "w").write("\n".join(l) + "\n")'
tamper "the end object cut" '
import sys
l = open(sys.argv[1]).read().splitlines()
open(sys.argv[2], "w").write("\n".join(l[:-1]) + "\n")'
tamper "entries swapped" '
import sys
l = open(sys.argv[1]).read().splitlines()
l[2], l[3] = l[3], l[2]
open(sys.argv[2], "w").write("\n".join(l) + "\n")'
tamper "an entry from another position (its seq edited)" '
import json, sys
l = open(sys.argv[1]).read().splitlines()
o = json.loads(l[2]); o["seq"] += 1
l[2] = json.dumps(o, separators=(",", ":"))
open(sys.argv[2], "w").write("\n".join(l) + "\n")'

# key state before the restarts (from the log's key events)
expect_exit 0 "key list before" cli "$OPERATOR_UID" key list --json
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), sort_keys=True))' "$T/out" > "$T/keys.before" 2>/dev/null ||
        cp "$T/out" "$T/keys.before"

# restart with the index deleted: rebuilt, same answers and key state
stop_agent
check "the index is on disk" test -s "$T/state/index.sqlite"
rm -f "$T/state/index.sqlite" "$T/state/index.sqlite-wal" "$T/state/index.sqlite-shm"
start_agent
check "the agent said it rebuilt the index" grep -q "index.sqlite is missing: rebuilding" "$T/agent.log"
run_queries "rebuilt (deleted)"
expect_exit 0 "key list after the rebuild" cli "$OPERATOR_UID" key list --json
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), sort_keys=True))' "$T/out" > "$T/keys.after" 2>/dev/null ||
        cp "$T/out" "$T/keys.after"
check "the key state is the same (from the indexed key events)" cmp -s "$T/keys.before" "$T/keys.after"

# garbage in place of the index
stop_agent
head -c 65536 /dev/urandom > "$T/state/index.sqlite"
chown "$AGENT_UID:$AGENT_GID" "$T/state/index.sqlite"
rm -f "$T/state/index.sqlite-wal" "$T/state/index.sqlite-shm"
start_agent
check "the agent said the garbage index is rebuilt" grep -q "is unreadable or of another version: rebuilding" "$T/agent.log"
run_queries "rebuilt (garbage)"
export_check "rebuilt (garbage)"

# catch up: entries signed while... the index behind the log (a copy of an
# older index put back): the agent indexes only the difference
stop_agent
cp "$T/state/index.sqlite" "$T/index.old"
start_agent
sign_many "$RUNNER2_UID" ci-nightly 30 2
stop_agent
cp "$T/index.old" "$T/state/index.sqlite"
rm -f "$T/state/index.sqlite-wal" "$T/state/index.sqlite-shm"
chown "$AGENT_UID:$AGENT_GID" "$T/state/index.sqlite"
grep -c "rebuilding" "$T/agent.log" > "$T/rebuilds.before"
start_agent
check "an index behind the log is caught up, not rebuilt" test "$(grep -c rebuilding "$T/agent.log")" = "$(cat "$T/rebuilds.before")"
expect_exit 0 "find --principal ci-nightly after the catch-up" cli "$AUDITOR_UID" audit find --principal ci-nightly
check "find sees the 30 signatures made while the index was away ($(wc -l < "$T/out"))" \
        test "$(wc -l < "$T/out")" = $((80 + 20 + 30 + 1))

expect_exit 2 "find needs a filter" cli "$AUDITOR_UID" audit find --since 2026-01-01T00:00:00Z
expect_exit 2 "a bad --since" cli "$AUDITOR_UID" audit export --since yesterday
stop_agent
finish
