#!/bin/bash
# The audit log end to end: a checkpoint verified by openssl from the note
# text alone; receipts of many signatures from 8 concurrent clients, all
# verified offline, distinct sequence numbers; kill -9 while 8 clients sign,
# restart: the tree continues, and every receipt any client received still
# verifies, linked to the new checkpoint by a consistency proof checked with
# an independent verifier (tests/lib/tlog.py, itself checked against the
# vectors of golang.org/x/mod/sumdb/tlog); an unwritable log refuses to sign.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent
TLOG="env PYTHONPATH=$SRCDIR/tests/lib python3"

check "the test's own RFC 9162 verifier agrees with the independent vectors" $TLOG -c '
import json, sys, tlog
v = json.load(open(sys.argv[1]))
leaves = [tlog.leaf_hash(e.encode()) for e in v["entries"]]
r13 = bytes.fromhex(v["roots_hex"]["13"])
for p in v["inclusion_size_13"]:
    assert tlog.verify_inclusion(leaves[p["index"]], p["index"], 13, [bytes.fromhex(h) for h in p["proof"]], r13)
for c in v["consistency_to_13"]:
    m = c["old_size"]
    assert tlog.verify_consistency(m, 13, bytes.fromhex(v["roots_hex"][str(m)]), r13, [bytes.fromhex(h) for h in c["proof"]])
' "$SRCDIR/tests/vectors/tlog.json"

# the log key and a checkpoint, verified with openssl from the note alone
expect_exit 0 "audit log-key" cli "$STRANGER_UID" audit log-key
sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$T/out" > "$T/logkey.pem"
verifier=$(grep '^provsign.test/it+' "$T/out")
check "log-key prints the verifier key string <origin>+<hash>+<key>" test -n "$verifier"
keyhash=$(openssl pkey -pubin -in "$T/logkey.pem" -outform DER | sha256sum | cut -c1-8)
expect_eq "$(echo "$verifier" | cut -d+ -f2)" "$keyhash" "verifier key hash = SHA-256(SPKI)[:4]"
expect_exit 0 "audit checkpoint" cli "$STRANGER_UID" audit checkpoint
cp "$T/out" "$T/cp.note"

# verify_note NOTEFILE: openssl over the note text, nothing of ours
verify_note() {
        $TLOG - "$1" "$T/nv" <<'PY' || return 1
import sys, tlog
body, sigs = tlog.split_note(open(sys.argv[1]).read())
name, kh, sig = sigs[0]
open(sys.argv[2] + ".body", "wb").write(body)
open(sys.argv[2] + ".sig", "wb").write(sig)
open(sys.argv[2] + ".kh", "w").write(kh.hex())
assert name == tlog.parse_checkpoint(body)[0], name
PY
        [ "$(cat "$T/nv.kh")" = "$keyhash" ] &&
                openssl dgst -sha256 -verify "$T/logkey.pem" -signature "$T/nv.sig" "$T/nv.body" >/dev/null
}
check "openssl verifies the checkpoint signature from the note text alone" verify_note "$T/cp.note"
# the recipe of docs/auditing.md, verbatim
readme_recipe() {
        local body sig
        body=$(mktemp "$T/body-XXXXXX") sig=$(mktemp "$T/sig-XXXXXX")
        sed '/^$/,$d' "$1" > "$body"
        sed -n 's/^— [^ ]* //p' "$1" | base64 -d | tail -c +5 > "$sig"
        openssl dgst -sha256 -verify "$T/logkey.pem" -signature "$sig" "$body" >/dev/null
}
check "the openssl recipe of docs/auditing.md verifies the checkpoint" readme_recipe "$T/cp.note"
cp "$T/cp.note" "$T/tampered.note"
sed -i '2s/.*/999999/' "$T/tampered.note"
if verify_note "$T/tampered.note"; then fail "a tampered checkpoint verified"; else pass "a tampered checkpoint fails"; fi

# receipts from 8 concurrent clients
N=${PROVSIGN_TEST_RECEIPTS:-50}  # 400 signatures; most of the cost is the processes of the CLI loops
mkdir -p "$T/r"
chmod 0777 "$T/r"
for c in $(seq 1 8); do
        (
                for i in $(seq 1 "$N"); do
                        d=$(random_digest)
                        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" --json > "$T/r/$c-$i.json" 2>>"$T/r/err" ||
                                echo "$c-$i" >> "$T/r/failed"
                done
        ) &
done
wait_clients() {
        local j
        for j in $(jobs -p); do [ "$j" = "$AGENT_PID" ] || wait "$j"; done
}
wait_clients
expect_eq "$(cat "$T/r/failed" 2>/dev/null | wc -l)" 0 "all $((8 * N)) signatures returned"
check "every receipt has a distinct log_seq" python3 -c '
import json, glob, sys
seqs = [json.load(open(f))["receipt"]["log_seq"] for f in glob.glob(sys.argv[1] + "/*.json")]
assert len(seqs) == len(set(seqs)) == int(sys.argv[2]), (len(seqs), len(set(seqs)))
' "$T/r" $((8 * N))
bad=0
for f in "$T"/r/*.json; do
        "$PROVSIGN_CLI" receipt verify --log-key "$T/logkey.pem" "$f" >/dev/null 2>&1 || bad=$((bad + 1))
done
expect_eq "$bad" 0 "provsign receipt verify accepts all $((8 * N)) receipts offline"
check "the independent verifier accepts every receipt's inclusion proof" $TLOG - "$T/r" <<'PY'
import base64, glob, json, sys, tlog
for f in glob.glob(sys.argv[1] + "/*.json"):
    r = json.load(open(f))["receipt"]
    body, sigs = tlog.split_note(r["checkpoint"])
    origin, size, root = tlog.parse_checkpoint(body)
    assert size == r["tree_size"]
    proof = [base64.b64decode(h) for h in r["inclusion_proof"]]
    assert tlog.verify_inclusion(tlog.leaf_hash(base64.b64decode(r["leaf"])), r["log_seq"], size, proof, root), f
PY
syncs_note=$(ls "$T"/r/*.json | wc -l)
first=$(ls "$T"/r/*.json | head -1)
cp "$first" "$T/one.json"
python3 -c '
import json, sys, base64
d = json.load(open(sys.argv[1]))
leaf = bytearray(base64.b64decode(d["receipt"]["leaf"])); leaf[-1] ^= 1
d["receipt"]["leaf"] = base64.b64encode(bytes(leaf)).decode()
json.dump(d, open(sys.argv[1], "w"))' "$T/one.json"
expect_exit 1 "a receipt with one leaf bit flipped fails verification (exit 1)" "$PROVSIGN_CLI" receipt verify --log-key "$T/logkey.pem" "$T/one.json"

# kill -9 while 8 clients sign; restart; every receipt received still holds
rm -rf "$T/k"
mkdir -p "$T/k"
chmod 0777 "$T/k"
for c in $(seq 1 8); do
        (
                for i in $(seq 1 200); do
                        d=$(random_digest)
                        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" --json > "$T/k/$c-$i.json" 2>/dev/null ||
                                { rm -f "$T/k/$c-$i.json"; break; }
                done
        ) &
done
# kill once the clients are well under way (at least 16 signatures
# answered), whatever the machine's load
check "16 signatures answered before the kill" \
        wait_for 120 eval '[ "$(find "$T/k" -name "*.json" -size +0 | wc -l)" -ge 16 ]'
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
AGENT_PID=
wait_clients
got=$(ls "$T"/k/*.json 2>/dev/null | wc -l)
check "clients received signatures before the kill ($got)" test "$got" -gt 0
start_agent
d=$(random_digest)
expect_exit 0 "signing continues after the restart" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" --json
after_seq=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["receipt"]["log_seq"])' "$T/out")
check "the tree continues: the new entry comes after every received one" python3 -c '
import json, glob, sys
seqs = [json.load(open(f))["receipt"]["log_seq"] for f in glob.glob(sys.argv[1] + "/*.json")]
assert max(seqs) < int(sys.argv[2]), (max(seqs), sys.argv[2])' "$T/k" "$after_seq"
bad=0
for f in "$T"/k/*.json; do
        m=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["receipt"]["tree_size"])' "$f")
        cli "$STRANGER_UID" audit checkpoint --from-size "$m" --json > "$T/cons.json" 2>/dev/null || { bad=$((bad + 1)); continue; }
        $TLOG - "$f" "$T/cons.json" <<'PY' || bad=$((bad + 1))
import base64, json, sys, tlog
r = json.load(open(sys.argv[1]))["receipt"]
c = json.load(open(sys.argv[2]))
old_body, _ = tlog.split_note(r["checkpoint"])
new_body, _ = tlog.split_note(c["checkpoint"])
_, m, root_m = tlog.parse_checkpoint(old_body)
_, n, root_n = tlog.parse_checkpoint(new_body)
assert c["consistency"]["from_size"] == m and c["tree_size"] == n
proof = [base64.b64decode(h) for h in c["consistency"]["proof"]]
assert tlog.verify_consistency(m, n, root_m, root_n, proof)
# and the entry is in the new tree too: its old inclusion proof plus consistency
assert tlog.verify_inclusion(tlog.leaf_hash(base64.b64decode(r["leaf"])), r["log_seq"], m,
                             [base64.b64decode(h) for h in r["inclusion_proof"]], root_m)
PY
done
expect_eq "$bad" 0 "all $got receipts from before the kill link to the new checkpoint by a consistency proof"
expect_exit 0 "new checkpoint" cli "$STRANGER_UID" audit checkpoint
check "openssl verifies the checkpoint after the restart" verify_note "$T/out"
stop_agent

# an unwritable log: signing is refused, nothing signed, the agent stays up
size=$(du -cb "$T"/state/log/*.seg | tail -1 | cut -f1)
agent_argv
prlimit --fsize=$((size + 600)) "${AGENT_ARGV[@]}" --config "$CONF" 2>>"$T/agent.log" &
AGENT_PID=$!
check "the agent under the file size limit is ready" wait_for 60 eval '[ "$(grep -c " ready: " "$T/agent.log")" -ge 3 ]'
for i in 1 2 3 4 5 6 7 8; do
        d=$(random_digest)
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" > "$T/full-$i.out" 2> "$T/full-$i.err"
        echo $? > "$T/full-$i.rc"
done
check "once the log cannot grow, signing answers UNAVAILABLE (exit 3)" grep -q '^3$' "$T"/full-*.rc
check "the refusal says the audit log cannot record it" grep -qh "^UNAVAILABLE" "$T"/full-*.err
refused_after=0
for i in 1 2 3 4 5 6 7 8; do
        if [ "$(cat "$T/full-$i.rc")" = 3 ]; then refused_after=1; elif [ "$refused_after" = 1 ]; then fail "signature $i returned after the log failed"; fi
        if [ "$(cat "$T/full-$i.rc")" = 3 ] && [ -s "$T/full-$i.out" ]; then fail "a refused request printed a signature"; fi
done
check "agent still up after the log failed" agent_alive
check "the failure is in the agent's log" grep -q "audit log: committing entries" "$T/agent.log"
kill -TERM "$AGENT_PID"; wait "$AGENT_PID"; AGENT_PID=
finish
