#!/bin/bash
# Auditors end to end on a real agent and token: export (JSON
# Lines, CSV, partial ranges), offline verify and its tamper suite (each
# case fails at the exact sequence number with the exact reason),
# --previous with a rewritten history, proof and find; kill -9 while 8
# clients sign, restart: every digest a client got a signature for is in the
# export, and the export verifies. The final checkpoint is also checked by
# an independent verifier (tests/lib/tlog.py + openssl).
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent
TLOG="env PYTHONPATH=$SRCDIR/tests/lib python3"

expect_exit 0 "audit log-key" cli "$STRANGER_UID" audit log-key
sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$T/out" > "$T/logkey.pem"

# some history: signatures of two principals, with annotations
mkdir -p "$T/d"
chmod 0777 "$T/d"
for i in $(seq 1 8); do
        d=$(random_digest)
        echo "$d" >> "$T/d/release"
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" -a "build=$i" -a "source=sha256:$(random_digest)" \
                -t application/vnd.in-toto+json >/dev/null || fail "sign $i"
        d=$(random_digest)
        cli "$RUNNER2_UID" sign --principal ci-nightly --digest "sha384:$d$(random_digest | cut -c1-32)" >/dev/null || fail "sign nightly $i"
done

expect_exit 3 "export needs the auditor role" cli "$RUNNER_UID" audit export
expect_stderr_prefix "PERMISSION_DENIED" "the refusal names the status"
expect_exit 0 "audit export" cli "$AUDITOR_UID" audit export
cp "$T/out" "$T/full.jsonl"
n=$(($(wc -l < "$T/full.jsonl") - 1))
check "the export has every entry and one final object ($n entries)" test "$n" -ge 18
check "entries carry exactly the documented keys, null where a field does not apply" python3 - "$T/full.jsonl" <<'PY'
import json, sys, base64, re
lines = open(sys.argv[1]).read().splitlines()
keys = ["seq","time","event","uid","gid","pid","exe","principal","keyid","digest","payload_type","annotations","status","leaf"]
signs = 0
for i, l in enumerate(lines[:-1]):
    o = json.loads(l)
    assert list(o) == keys, list(o)
    assert o["seq"] == i
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", o["time"]), o["time"]
    base64.b64decode(o["leaf"], validate=True)
    if o["event"] == "SIGN":
        signs += 1
        assert o["status"] == "OK" and re.fullmatch(r"sha(256|384):[0-9a-f]+", o["digest"])
        assert isinstance(o["uid"], int) and o["principal"] in ("ci-release", "ci-nightly")
    elif o["event"] == "REFUSED":
        assert o["status"] == "PERMISSION_DENIED" and o["uid"] == 64911, o
    else:
        assert o["status"] is None and o["uid"] is None, o
final = json.loads(lines[-1])
assert list(final) == ["checkpoint","tree_size","left","right","consistency"], list(final)
assert final["consistency"] is None and final["left"] == [] and final["tree_size"] >= len(lines) - 1
assert signs == 16, signs
PY

expect_exit 0 "audit verify of a full export" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/full.jsonl"
check "the summary names entries, principals and keys" grep -q "^verified: $n entries (seq 0..$((n - 1)))" "$T/out"
check "the summary counts 2 signing principals" grep -qx "principals: 2" "$T/out"
expect_exit 0 "audit verify --json" "$PROVSIGN_CLI" audit verify --json --log-key "$T/logkey.pem" "$T/full.jsonl"
check "the JSON summary" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert s["verified"] is True and s["entries"] == int(sys.argv[2]) and s["principals"] == 2 and s["keys"] >= 3, s
assert s["checkpoint_size"] >= s["entries"] and s["origin"] == "provsign.test/it"' "$T/out" "$n"

# the final checkpoint and the range, checked without our code
check "tlog.py + openssl: the export's leaves hash to the signed checkpoint's root" $TLOG - "$T/full.jsonl" "$T/logkey.pem" "$T/ind" <<'PY'
import base64, json, subprocess, sys, tlog
lines = open(sys.argv[1]).read().splitlines()
final = json.loads(lines[-1])
body, sigs = tlog.split_note(final["checkpoint"])
origin, size, root = tlog.parse_checkpoint(body)
assert size == final["tree_size"] == len(lines) - 1
open(sys.argv[3] + ".body", "wb").write(body)
open(sys.argv[3] + ".sig", "wb").write(sigs[0][2])
subprocess.run(["openssl", "dgst", "-sha256", "-verify", sys.argv[2], "-signature", sys.argv[3] + ".sig",
                sys.argv[3] + ".body"], check=True, stdout=subprocess.DEVNULL)
leaves = [tlog.leaf_hash(base64.b64decode(json.loads(l)["leaf"])) for l in lines[:-1]]
def mth(h):  # RFC 9162 2.1.1
    if len(h) == 1: return h[0]
    k = 1
    while k * 2 < len(h): k *= 2
    return tlog.node_hash(mth(h[:k]), mth(h[k:]))
assert mth(leaves) == root
PY

# CSV: same columns
expect_exit 0 "audit export --format csv" cli "$AUDITOR_UID" audit export --format csv
check "CSV has the header and one row per entry with the same leaf" python3 - "$T/out" "$T/full.jsonl" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
lines = open(sys.argv[2]).read().splitlines()[:-1]
assert len(rows) >= len(lines)
for r, l in zip(rows, lines):
    o = json.loads(l)
    assert r["leaf"] == o["leaf"] and int(r["seq"]) == o["seq"] and r["principal"] == (o["principal"] or "")
PY

# a partial range: left/right tie it to the root
expect_exit 0 "audit export --from 5 --to 17" cli "$AUDITOR_UID" audit export --from 5 --to 17
cp "$T/out" "$T/part.jsonl"
expect_eq "$(($(wc -l < "$T/part.jsonl") - 1))" 13 "the partial export has entries 5..17"
expect_exit 0 "a partial export verifies" "$PROVSIGN_CLI" audit verify --json --log-key "$T/logkey.pem" "$T/part.jsonl"
check "keys first seen signing in a partial range are 'unknown before range', not failures" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert s["first_seq"] == 5 and s["last_seq"] == 17 and s["keys_unknown_before_range"] == 2, s' "$T/out"
expect_exit 3 "an export past the end is refused" cli "$AUDITOR_UID" audit export --from 100000
expect_stderr_prefix "INVALID_ARGUMENT" "... as INVALID_ARGUMENT"

# ---- the tamper suite: each fails at its sequence number, for its reason ----
# tamper NAME SCRIPT: a python snippet edits `lines` (the export's lines).
tamper() {
        local name=$1 script=$2
        python3 - "$T/full.jsonl" "$T/t-$name.jsonl" <<PY
import base64, json, sys
lines = open(sys.argv[1]).read().splitlines()
entries = [json.loads(l) for l in lines[:-1]]
def dump(o): return json.dumps(o, separators=(",", ":"))
$script
open(sys.argv[2], "w").write("".join(l + "\n" for l in lines))
PY
}
# verify_fails NAME "expected first stderr line"
verify_fails() {
        expect_exit 1 "tamper $1: verify fails" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/t-$1.jsonl"
        expect_eq "$(head -1 "$T/err")" "$2" "tamper $1: the failure names the seq and reason"
}
# a sign entry to tamper with: the 3rd release signature
s=$(python3 -c '
import json, sys
for l in open(sys.argv[1]):
    o = json.loads(l)
    if o.get("principal") == "ci-release" and o["annotations"] and o["annotations"].get("build") == "3": print(o["seq"])' "$T/full.jsonl")
check "found the entry to tamper with ($s)" test -n "$s"

tamper flip "
e = entries[$s]; leaf = bytearray(base64.b64decode(e['leaf']))
i = leaf.find(bytes.fromhex(e['digest'].split(':')[1]))
leaf[i + 5] ^= 0x40; e['leaf'] = base64.b64encode(bytes(leaf)).decode(); lines[$s] = dump(e)"
verify_fails flip "FAILED at seq $s: field \"digest\" does not match the entry's leaf (edited)"

tamper edit "e = entries[$s]; e['principal'] = 'ci-nightly'; lines[$s] = dump(e)"
verify_fails edit "FAILED at seq $s: field \"principal\" does not match the entry's leaf (edited)"

tamper editann "e = entries[$s]; e['annotations']['build'] = '4'; lines[$s] = dump(e)"
verify_fails editann "FAILED at seq $s: field \"annotations\" does not match the entry's leaf (edited)"

tamper drop "del lines[$s]"
verify_fails drop "FAILED at seq $s: expected seq $s, found seq $((s + 1)) (an entry is missing or out of order)"

tamper reorder "lines[$s], lines[$s + 1] = lines[$s + 1], lines[$s]"
verify_fails reorder "FAILED at seq $s: expected seq $s, found seq $((s + 1)) (an entry is missing or out of order)"

tamper dup "lines.insert($s + 1, lines[$s])"
verify_fails dup "FAILED at seq $((s + 1)): expected seq $((s + 1)), found seq $s (an entry is repeated, inserted or out of order)"

# insert: a forged entry, fields consistent with its forged leaf, claiming seq s
tamper insert "
import subprocess
e = entries[$s]; leaf = bytearray(base64.b64decode(e['leaf']))
i = leaf.find(bytes.fromhex(e['digest'].split(':')[1])); leaf[i] ^= 1
e['leaf'] = base64.b64encode(bytes(leaf)).decode(); e['digest'] = 'sha256:' + bytes(leaf[i:i + 32]).hex()
lines.insert($s, dump(e))"
verify_fails insert "FAILED at seq $((s + 1)): expected seq $((s + 1)), found seq $s (an entry is repeated, inserted or out of order)"

# replace: the same forgery in place of the real entry: only the root can tell
tamper replace "
e = entries[$s]; leaf = bytearray(base64.b64decode(e['leaf']))
i = leaf.find(bytes.fromhex(e['digest'].split(':')[1])); leaf[i] ^= 1
e['leaf'] = base64.b64encode(bytes(leaf)).decode(); e['digest'] = 'sha256:' + bytes(leaf[i:i + 32]).hex()
lines[$s] = dump(e)"
verify_fails replace "FAILED: checkpoint: entries 0..$((n - 1)) (with left/right) do not hash to the checkpoint's root"

tamper truncate "del lines[$s + 1:]"
verify_fails truncate "FAILED at seq $((s + 1)): the export ends after seq $s without its final checkpoint object (truncated)"

tamper cut "lines[$s] = lines[$s][:40]; del lines[$s + 1:]"
verify_fails cut "FAILED at seq $s: line $((s + 1)) is not a JSON object (truncated or edited?)"

tamper forge "
f = json.loads(lines[-1]); body, sig = f['checkpoint'].split('\n\n')
name, b64 = sig.rstrip('\n').rsplit(' ', 1); raw = bytearray(base64.b64decode(b64)); raw[-3] ^= 1
f['checkpoint'] = body + '\n\n' + name + ' ' + base64.b64encode(bytes(raw)).decode() + '\n'; lines[-1] = dump(f)"
verify_fails forge "FAILED: checkpoint: the signature by 'provsign.test/it' does not verify with the log key"

tamper forgesize "
f = json.loads(lines[-1]); parts = f['checkpoint'].split('\n'); parts[1] = str(int(parts[1]) + 1)
f['checkpoint'] = '\n'.join(parts); lines[-1] = dump(f)"
verify_fails forgesize "FAILED: checkpoint: the signature by 'provsign.test/it' does not verify with the log key"

# older checkpoint: the final object of an export made when the log was shorter
cli "$AUDITOR_UID" audit export --from 0 --to 9 > "$T/old.jsonl" || fail "export 0..9"
old_size=$(tail -1 "$T/old.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tree_size"])')
# (the agent always signs its newest size; make an older one by exporting before more signing)
cp "$T/full.jsonl" "$T/before-more.jsonl"
for i in 1 2 3; do cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" >/dev/null; done
expect_exit 0 "export after more signing" cli "$AUDITOR_UID" audit export
cp "$T/out" "$T/full2.jsonl"
n2=$(($(wc -l < "$T/full2.jsonl") - 1))

# the library's own export (tests/examples/export-log.c): streamed, verified
# with the pinned log key, and against the older checkpoint kept above
install -m 0644 "$T/logkey.pem" "$T/d/logkey.pem"
python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["checkpoint"], end="")' \
        "$T/full.jsonl" > "$T/d/kept-checkpoint"
chmod 0644 "$T/d/kept-checkpoint"
expect_exit 0 "the libprovsign example exports and verifies the log" \
        as "$AUDITOR_UID" "$PROVSIGN_EXAMPLE_EXPORT_LOG" "$T/d/logkey.pem"
check "... all $n2 entries, seq 0..$((n2 - 1))" grep -q "^verified $n2 entries (seq 0..$((n2 - 1))), tree size" "$T/out"
expect_exit 0 "... and against the older checkpoint it kept (consistency proof)" \
        as "$AUDITOR_UID" "$PROVSIGN_EXAMPLE_EXPORT_LOG" "$T/d/logkey.pem" "$T/d/kept-checkpoint"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null | openssl pkey -pubout > "$T/d/other.pem"
chmod 0644 "$T/d/other.pem"
expect_exit 1 "... and fails with another log key" as "$AUDITOR_UID" "$PROVSIGN_EXAMPLE_EXPORT_LOG" "$T/d/other.pem"
expect_exit 3 "... and is refused without the auditor role" as "$RUNNER_UID" "$PROVSIGN_EXAMPLE_EXPORT_LOG" "$T/d/logkey.pem"
python3 - "$T/full2.jsonl" "$T/full.jsonl" "$T/t-older.jsonl" <<'PY'
import sys
new = open(sys.argv[1]).read().splitlines(); old = open(sys.argv[2]).read().splitlines()
open(sys.argv[3], "w").write("".join(l + "\n" for l in new[:-1] + old[-1:]))
PY
verify_fails older "FAILED at seq $n: not covered by the checkpoint (tree size $n, older than the entries?)"

# splice two logs: a second agent on its own token and state, same policy
stop_agent
T1=$T
mkdir -p "$T/b/run" "$T/b/state"
"$SRCDIR/tests/lib/make-token" "$T/b/tok" provsign
chown -R "$AGENT_UID:$AGENT_GID" "$T/b"
chmod 0755 "$T/b" "$T/b/run"
sed -e "s|^socket = .*|socket = $T/b/run/agent.sock|" -e "s|^state_dir = .*|state_dir = $T/b/state|" \
    -e "s|^pin_file = .*|pin_file = $T/b/tok/pin|" "$CONF" > "$T/b/agent.conf"
CONF_A=$CONF SOCK_A=$SOCK SOFTHSM_A=$SOFTHSM2_CONF
CONF=$T/b/agent.conf SOCK=$T/b/run/agent.sock
export SOFTHSM2_CONF=$T/b/tok/softhsm2.conf
start_agent
for i in $(seq 1 20); do cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" >/dev/null; done
cli "$AUDITOR_UID" audit export > "$T/b.jsonl" || fail "export of log B"
stop_agent
CONF=$CONF_A SOCK=$SOCK_A
export SOFTHSM2_CONF=$SOFTHSM_A
# A's entries before s, B's from s on, A's checkpoint
python3 - "$T/full.jsonl" "$T/b.jsonl" "$T/t-splice.jsonl" "$s" <<'PY'
import json, sys
a = open(sys.argv[1]).read().splitlines(); b = open(sys.argv[2]).read().splitlines(); s = int(sys.argv[4])
out = a[:s] + b[s:len(a) - 1] + a[-1:]
open(sys.argv[3], "w").write("".join(l + "\n" for l in out))
PY
bseq=$(python3 -c '
import json, sys
s = int(sys.argv[2])
for l in open(sys.argv[1]).read().splitlines()[s:]:
    o = json.loads(l)
    if o.get("event") == "SIGN": print(o["seq"]); break' "$T/t-splice.jsonl" "$s")
bkey=$(python3 -c '
import json, sys
for l in open(sys.argv[1]):
    o = json.loads(l)
    if o.get("seq") == int(sys.argv[2]): print(o["keyid"])' "$T/t-splice.jsonl" "$bseq")
verify_fails splice "FAILED at seq $bseq: signed by ci-release with key $bkey, which is not a key of the principal (no KEY_CREATE or KEY_ROTATE before it)"

# ---- --previous: consistency with a checkpoint the auditor kept ----
start_agent
python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["checkpoint"], end="")' \
        "$T/full.jsonl" > "$T/kept.note"
kept_size=$(sed -n 2p "$T/kept.note")
expect_exit 0 "export --previous-size of the kept checkpoint" cli "$AUDITOR_UID" audit export --previous-size "$kept_size"
cp "$T/out" "$T/inc.jsonl"
expect_exit 0 "verify --previous: the log extends the kept checkpoint" \
        "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" --previous "$T/kept.note" "$T/inc.jsonl"
check "the summary says so" grep -q "consistent with the previous checkpoint" "$T/out"
expect_exit 1 "verify --previous without a consistency proof in the export fails" \
        "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" --previous "$T/kept.note" "$T/full2.jsonl"
expect_eq "$(head -1 "$T/err")" "FAILED: the export has no consistency proof from the previous checkpoint's size $kept_size (export with --previous-size $kept_size)" "... saying how to export"
# a rewritten history: log B's checkpoint of a larger tree, signed by B's key,
# replaces A's as "previous": fails as a foreign signature; and A's own kept
# checkpoint against a forged proof fails as a rewrite
tamper_inc() {
        python3 - "$T/inc.jsonl" "$T/t-$1.jsonl" <<PY
import base64, json, sys
lines = open(sys.argv[1]).read().splitlines()
f = json.loads(lines[-1])
$2
lines[-1] = json.dumps(f, separators=(",", ":"))
open(sys.argv[2], "w").write("".join(l + "\n" for l in lines))
PY
}
tamper_inc badproof "p = bytearray(base64.b64decode(f['consistency']['proof'][0])); p[0] ^= 1; f['consistency']['proof'][0] = base64.b64encode(bytes(p)).decode()"
expect_exit 1 "a forged consistency proof fails" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" --previous "$T/kept.note" "$T/t-badproof.jsonl"
expect_eq "$(head -1 "$T/err")" "FAILED: previous checkpoint: the log's history was rewritten: the tree of $(tail -1 "$T/inc.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tree_size"])') entries is not an extension of the previous tree of $kept_size" "... as a rewritten history"
# rewrite history for real: the agent's log files replaced by a log whose entry s differs
stop_agent
python3 - "$T/state/log" "$s" <<'PY'
import glob, struct, sys
# flip one byte of entry s's digest in the segment and fix its CRC32C, so the agent starts
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
seg = sorted(glob.glob(sys.argv[1] + "/*.seg"))[0]
buf = bytearray(open(seg, "rb").read())
off, seq = 0, 0
while seq < int(sys.argv[2]):
    n = struct.unpack(">I", buf[off:off + 4])[0]; off += 8 + n; seq += 1
n = struct.unpack(">I", buf[off:off + 4])[0]
entry = buf[off + 4:off + 4 + n]
entry[-10] ^= 1
buf[off + 4:off + 4 + n] = entry
buf[off + 4 + n:off + 8 + n] = struct.pack(">I", crc32c(bytes(entry)))
open(seg, "wb").write(buf)
PY
# the published tiles too (else the agent starts from them, and the
# export no longer matches its checkpoint): a rewrite by whoever owns the state
rm -rf "$T/state/tlog"
start_agent
expect_exit 0 "export of the rewritten log" cli "$AUDITOR_UID" audit export --previous-size "$kept_size"
cp "$T/out" "$T/rewritten.jsonl"
expect_exit 0 "the rewritten log verifies on its own (its checkpoint is freshly signed)" \
        "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/rewritten.jsonl"
expect_exit 1 "--previous catches the rewritten history" \
        "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" --previous "$T/kept.note" "$T/rewritten.jsonl"
check "... as a rewrite" grep -q "^FAILED: previous checkpoint: the log's history was rewritten" "$T/err"

# ---- proof and find ----
expect_exit 0 "audit proof --seq $s" cli "$AUDITOR_UID" audit proof --seq "$s"
cp "$T/out" "$T/proof.json"
expect_exit 0 "receipt verify accepts the proof" "$PROVSIGN_CLI" receipt verify --log-key "$T/logkey.pem" "$T/proof.json"
expect_exit 3 "proof of a missing entry" cli "$AUDITOR_UID" audit proof --seq 1000000
expect_stderr_prefix "NOT_FOUND" "... is NOT_FOUND"
d=$(sed -n 2p "$T/d/release")
expect_exit 0 "audit find --digest" cli "$AUDITOR_UID" audit find --digest "sha256:$d"
check "find --digest returns exactly that signature" python3 -c '
import json, sys
l = open(sys.argv[1]).read().splitlines()
assert len(l) == 1 and json.loads(l[0])["digest"] == "sha256:" + sys.argv[2], l' "$T/out" "$d"
src=$(python3 -c '
import json, sys
for l in open(sys.argv[1]).read().splitlines()[:-1]:
    o = json.loads(l)
    if o["annotations"] and "source" in o["annotations"]: print(o["annotations"]["source"]); break' "$T/full.jsonl")
expect_exit 0 "audit find by an annotation digest" cli "$AUDITOR_UID" audit find --digest "$src"
check "find matches annotation values sha256:HEX" python3 -c '
import json, sys
l = open(sys.argv[1]).read().splitlines()
assert len(l) == 1 and json.loads(l[0])["annotations"]["source"] == sys.argv[2], l' "$T/out" "$src"
expect_exit 0 "audit find --principal ci-nightly" cli "$AUDITOR_UID" audit find --principal ci-nightly
check "find --principal returns its 8 signatures (and its key event)" python3 -c '
import json, sys
l = [json.loads(x) for x in open(sys.argv[1]).read().splitlines()]
assert all(o["principal"] == "ci-nightly" for o in l) and sum(o["event"] == "SIGN" for o in l) == 8, l' "$T/out"
mid=$(python3 -c '
import json, sys
l = [json.loads(x) for x in open(sys.argv[1]).read().splitlines()[:-1] if json.loads(x)["principal"] == "ci-nightly" and json.loads(x)["event"] == "SIGN"]
print(l[4]["time"], l[7]["time"])' "$T/full.jsonl")
expect_exit 0 "audit find --principal --since --until" cli "$AUDITOR_UID" audit find --principal ci-nightly --since "${mid% *}" --until "${mid#* }"
expect_eq "$(wc -l < "$T/out")" 4 "the time window selects signatures 5..8 of ci-nightly"
expect_exit 3 "find needs the auditor role" cli "$RUNNER_UID" audit find --principal ci-release
expect_exit 2 "find needs --digest or --principal" cli "$AUDITOR_UID" audit find

# ---- real key events: rotate and revoke, then verify; a signature forged
# onto the retired key fails at its seq ----
old_key=$(python3 -c '
import json, sys
for l in open(sys.argv[1]).read().splitlines()[:-1]:
    o = json.loads(l)
    if o["event"] == "SIGN" and o["principal"] == "ci-release": k = o["keyid"]
print(k)' "$T/rewritten.jsonl")
expect_exit 0 "key rotate ci-release" cli "$OPERATOR_UID" key rotate --principal ci-release
expect_exit 0 "sign with the new key" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" --json
new_seq=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["receipt"]["log_seq"])' "$T/out")
expect_exit 0 "key revoke the old key" cli "$OPERATOR_UID" key revoke --key "$old_key" --reason "test"
expect_exit 0 "export after rotate and revoke" cli "$AUDITOR_UID" audit export
cp "$T/out" "$T/rot.jsonl"
expect_exit 0 "the export with real key events verifies" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/rot.jsonl"
python3 - "$T/rot.jsonl" "$T/t-oldkey.jsonl" "$new_seq" "$old_key" <<'PY'
import base64, json, sys
lines = open(sys.argv[1]).read().splitlines(); s = int(sys.argv[3]); old = sys.argv[4]
e = json.loads(lines[s]); leaf = base64.b64decode(e["leaf"])
leaf = leaf.replace(e["keyid"].encode(), old.encode()); e["keyid"] = old
e["leaf"] = base64.b64encode(leaf).decode(); lines[s] = json.dumps(e, separators=(",", ":"))
open(sys.argv[2], "w").write("".join(l + "\n" for l in lines))
PY
expect_exit 1 "a signature moved onto the retired key fails" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/t-oldkey.jsonl"
check "... at its seq, naming the retired key" grep -q "^FAILED at seq $new_seq: signed by ci-release with key $old_key, which was retired at seq" "$T/err"

# ---- kill -9 while 8 clients sign; restart; the export holds them all ----
stop_agent
start_agent
rm -rf "$T/k"
mkdir -p "$T/k"
chmod 0777 "$T/k"
for c in $(seq 1 8); do
        (
                for i in $(seq 1 200); do
                        d=$(random_digest)
                        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" >/dev/null 2>&1 || break
                        echo "sha256:$d" >> "$T/k/$c"
                done
        ) &
done
# kill once the clients are well under way (at least 16 signatures out)
check "the clients have 16 signatures before the kill" wait_for 120 eval '[ "$(count_lines . "$T"/k/*)" -ge 16 ]'
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
AGENT_PID=
for j in $(jobs -p); do wait "$j"; done
got=$(cat "$T"/k/* 2>/dev/null | wc -l)
check "clients received signatures before the kill ($got)" test "$got" -gt 0
start_agent
expect_exit 0 "export after the restart" cli "$AUDITOR_UID" audit export
cp "$T/out" "$T/after-kill.jsonl"
expect_exit 0 "the export after kill -9 verifies" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/after-kill.jsonl"
check "every digest a client got a signature for is in the export" python3 -c '
import glob, json, sys
have = {json.loads(l).get("digest") for l in open(sys.argv[1]).read().splitlines()[:-1]}
want = [l.strip() for f in glob.glob(sys.argv[2] + "/*") for l in open(f)]
missing = [d for d in want if d not in have]
assert not missing, missing[:3]' "$T/after-kill.jsonl" "$T/k"
stop_agent

# ---- slow readers: a big log, exports that nobody reads; signing goes on,
# at most EXPORT_MAX_STREAMS (4) exports stream at once, and read_timeout
# closes an export whose reader stopped ----
mkdir -p "$T/big"
chmod 0700 "$T/big"
# (it loads libp11 like the agent: the same sanitizer options)
gen_audit_log "$T/tok" "$T/big" 3000 bulk 2>"$T/gen.err" || fail "gen-audit-log: $(cat "$T/gen.err")"
mkdir -p "$T/slowdir"
chmod 0777 "$T/slowdir"
# (gen-audit-log signs with the log key of the agent's namespace on this
# token: the big log is that agent's state, and says so to the owner marker)
cp "$T/state/key-namespace" "$T/big/key-namespace"
chown -R "$AGENT_UID:$AGENT_GID" "$T/tok" "$T/big"
cp "$CONF" "$T/conf-small"
sed -i "s|^state_dir = .*|state_dir = $T/big|" "$CONF"
start_agent
timeouts_before=$(count_lines 'read timeout' "$T/agent.log")
as "$AUDITOR_UID" env PYTHONPATH="$SRCDIR/tests/lib" python3 - "$SOCK" "$T/slowdir/slow" <<'PY' &
import os, socket, struct, sys, time
from rawclient import fields
req = bytes([0x08, 0x01, 0xa2, 0x01, 0x00])           # Request{protocol_version 1, export {}}
def export(): 
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(struct.pack(">I", len(req)) + req)
    return s
def frames(data):
    """the complete frames in data: (done flag of each ExportResponse, bytes)"""
    out, i = [], 0
    while i + 4 <= len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        if i + 4 + n > len(data): break
        f = fields(data[i + 4:i + 4 + n]); i += 4 + n
        e = fields(f[18][0]) if 18 in f else {}   # Response.export
        out.append(bool(e.get(3, [0])[0]))
    return out
conns = []
for i in range(4):
    s = export(); s.settimeout(30)
    assert s.recv(1, socket.MSG_PEEK), "export %d did not start" % i   # its stream has begun
    conns.append(s)
# the fifth is refused at once: Response.status (field 2) = UNAVAILABLE (8)
f = export(); f.settimeout(30); hdr = f.recv(4); body = f.recv(struct.unpack(">I", hdr)[0])
open(sys.argv[2] + ".fifth", "w").write(body.hex())
# so is a Find (Request.find = 21, FindRequest.principal = 2): 4 exports or finds at most
from rawclient import call, request, field_bytes
st, msg, _ = call(sys.argv[1], request(21, field_bytes(2, b"ci-release")))
open(sys.argv[2] + ".find", "w").write("%s %s" % (st, msg))
# until the agent has given up on the four (read_timeout 2s; the test waits for its log lines)
while not os.path.exists(sys.argv[2] + ".go"): time.sleep(0.05)
got = []
for s in conns:
    s.settimeout(30); data = b""
    try:
        while True:
            b = s.recv(1 << 16)
            if not b: break
            data += b
    except OSError:
        pass
    got.append((len(data), any(frames(data))))
# a reader that reads: the whole export, up to its done frame (the four
# slots are freed at the end of the loop turn that logged their timeouts: a
# refusal "4 exports or finds are running" until then is retried)
deadline, tries = time.time() + 60, []
while True:
    s = export(); s.settimeout(60)
    hdr = s.recv(4, socket.MSG_WAITALL)
    first = s.recv(struct.unpack(">I", hdr)[0], socket.MSG_WAITALL) if len(hdr) == 4 else b""
    if 18 in fields(first):
        break
    tries.append(fields(first).get(3, [b"closed without a reply"])[0])   # Response.message
    assert time.time() < deadline, "the reading export never started: %r" % tries[-3:]
    s.close(); time.sleep(0.1)
n = len(first)
data = hdr + first
while not any(frames(data[-4 - n:])):
    hdr = s.recv(4, socket.MSG_WAITALL); n = struct.unpack(">I", hdr)[0]
    data += hdr + s.recv(n, socket.MSG_WAITALL)
open(sys.argv[2], "w").write(" ".join("%d:%s" % (n, "done" if d else "cut") for n, d in got) + " full:%d" % len(data))
PY
SLOW=$!
check "four exports stream, a fifth has its answer" wait_for 120 test -e "$T/slowdir/slow.fifth"
expect_exit 0 "signing works while 4 exports wait on readers that do not read" \
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"
expect_exit 0 "status answers meanwhile" cli "$STRANGER_UID" status
check "the agent logged the read timeouts of the four" \
        wait_for 120 eval '[ "$(count_lines "read timeout" "$T/agent.log")" -ge $((timeouts_before + 4)) ]'
touch "$T/slowdir/slow.go"
wait "$SLOW"
check "a fifth concurrent export is refused with UNAVAILABLE" grep -q "^0801100[0-9a-f]*" "$T/slowdir/slow.fifth"
check "... status 8 (UNAVAILABLE)" grep -q "^08011008" "$T/slowdir/slow.fifth"
expect_eq "$(cat "$T/slowdir/slow.find")" "UNAVAILABLE 4 exports or finds are running; try again later" \
        "a Find meanwhile is refused too"
check "the stalled exports were cut off by read_timeout before their last frame, with less than a whole export ($(cat "$T/slowdir/slow") bytes)" \
        python3 -c '
import sys
w = open(sys.argv[1]).read().split()
full = int(w[-1].split(":")[1]); got = [x.split(":") for x in w[:-1]]
assert len(got) == 4 and all(d == "cut" and int(n) < full for n, d in got), (got, full)' "$T/slowdir/slow"
# (the generated part: the agent adopted this token's other keys without
# key events in the new log, so only the generated range verifies whole)
expect_exit 0 "an export of the big log's generated entries" cli "$AUDITOR_UID" audit export --to 3000
cp "$T/out" "$T/big.jsonl"
expect_exit 0 "... verifies" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/big.jsonl"
check "... with its key event and all 3000 generated signatures" grep -q "^verified: 3001 entries (seq 0..3000)" "$T/out"
stop_agent
cp "$T/conf-small" "$CONF"

# ---- journald: structured events, to a stand-in journald socket: the
# agent runs in a private mount namespace where /run/systemd/journal is the
# stand-in's directory (whether or not a real journald runs here); its
# libsystemd writes the native protocol there ----
mkdir -p "$T/journal"
chmod 0755 "$T/journal"
python3 - "$T/journal/socket" "$T/journal.jsonl" <<'PY' &
import json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666)
out = open(sys.argv[2], "a", buffering=1)
while True:
    d, anc, _, _ = s.recvmsg(1 << 20, socket.CMSG_SPACE(12))
    # the sender's pid, as journald's _PID: other tests' agents may log here too
    f, i = {"_PID": str(struct.unpack("iII", anc[0][2][:12])[0]) if anc else ""}, 0
    while i < len(d):
        j = d.index(b"\n", i); line = d[i:j]
        if b"=" in line:
            k, v = line.split(b"=", 1); i = j + 1
        else:
            k = line; n = struct.unpack("<Q", d[j + 1:j + 9])[0]; v = d[j + 9:j + 9 + n]; i = j + 9 + n + 1
        f[k.decode()] = v.decode()
    out.write(json.dumps(f) + "\n")
PY
JPID=$!
on_cleanup 'kill "$JPID" 2>/dev/null'
check "the stand-in journald socket is up" wait_for 30 test -S "$T/journal/socket"
AGENT_PREFIX=(unshare --mount --propagation private sh -c
        'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/systemd/journal &&
         mount --bind "$0" /run/systemd/journal && exec "$@"' "$T/journal")
# journal_events = default: lifecycle, refusal, key event; no signatures
start_agent
jpid1=$AGENT_PID
cli "$RUNNER_UID" audit find --principal ci-release >/dev/null 2>&1
jd1=$(random_digest)
cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$jd1" >/dev/null || fail "sign (journal default)"
cli "$OPERATOR_UID" key rotate --principal ci-release >/dev/null || fail "rotate (journal)"
stop_agent
# journal_events = all: every signature too, with its seq, key and digest
echo "journal_events = all" >"$T/conf-journal-all"
sed -i "/^log_origin = /r $T/conf-journal-all" "$CONF"
start_agent
jpid2=$AGENT_PID
jd2=$(random_digest)
cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$jd2" --json > "$T/journal-sign.json" || fail "sign (journal all)"
stop_agent
AGENT_PREFIX=()
sed -i "/^journal_events = all$/d" "$CONF"
check "the stand-in received the second agent's stop" wait_for 30 \
        grep -q "\"_PID\": \"$jpid2\".*\"PROVSIGN_EVENT\": \"AGENT_STOP\"" "$T/journal.jsonl"
kill "$JPID"; wait "$JPID" 2>/dev/null
check "journald gets start, policy load, refusal, key event and stop with PROVSIGN_* fields; no signatures by default" \
        python3 - "$T/journal.jsonl" "$jpid1" "$OPERATOR_UID" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
ev = [e for e in ev if e.get("_PID") == sys.argv[2]]
kinds = [e["PROVSIGN_EVENT"] for e in ev]
assert kinds[:2] == ["AGENT_START", "POLICY_LOAD"] and kinds[-1] == "AGENT_STOP", kinds
r = [e for e in ev if e["PROVSIGN_EVENT"] == "REFUSED"]
assert len(r) == 1 and r[0]["PROVSIGN_REQUEST"] == "Find" and r[0]["PROVSIGN_STATUS"] == "PERMISSION_DENIED", r
assert r[0]["PROVSIGN_UID"] == "64911" and int(r[0]["PROVSIGN_SEQ"]) > 0 and r[0]["SYSLOG_IDENTIFIER"] == "provsign-agent"
assert all("SIGN" != k for k in kinds), kinds
k = [e for e in ev if e["PROVSIGN_EVENT"] == "KEY_ROTATE"]
assert len(k) == 1, kinds
k = k[0]
assert k["PROVSIGN_PRINCIPAL"] == "ci-release" and len(k["PROVSIGN_KEYID"]) == 64 and int(k["PROVSIGN_SEQ"]) > 0, k
assert k["PROVSIGN_UID"] == sys.argv[3]  and k["MESSAGE"].startswith("KEY_ROTATE " + k["PROVSIGN_KEYID"] + " of ci-release") and k["PRIORITY"] == "5", k
PY
check "journal_events = all adds one SIGN event per signature, naming its seq, key, digest and caller" \
        python3 - "$T/journal.jsonl" "$jpid2" "$jd2" "$RUNNER_UID" "$T/journal-sign.json" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
ev = [e for e in ev if e.get("_PID") == sys.argv[2]]
s = [e for e in ev if e["PROVSIGN_EVENT"] == "SIGN"]
assert len(s) == 1, [e["PROVSIGN_EVENT"] for e in ev]
s = s[0]
got = json.load(open(sys.argv[5]))
assert s["PROVSIGN_DIGEST"] == "sha256:" + sys.argv[3] and s["PROVSIGN_PRINCIPAL"] == "ci-release", s
assert s["PROVSIGN_KEYID"] == got["keyid"] and int(s["PROVSIGN_SEQ"]) == got["receipt"]["log_seq"], (s, got)
assert s["PROVSIGN_UID"] == sys.argv[4] and s["PROVSIGN_STATUS"] == "OK" and s["PRIORITY"] == "6", s
PY
finish
