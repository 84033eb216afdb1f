#!/bin/bash
# Duplicate annotation keys in an old log (docs/hardening.md, "What a
# signer may write into its entry"): the agent refuses them at Sign now,
# but a log written before may hold entries with two pairs of one key. The
# export shows every pair (a repeated key maps to the array of its values,
# in order) and `provsign audit verify` compares all of them against the
# leaf: an edit of either value fails, and so does an export that shows one
# value only (as the export did before, keeping the last one).
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
gen_audit_log --duplicate-keys "$T/tok" "$T/state" 20 2>"$T/gen.err" || fail "gen-audit-log: $(cat "$T/gen.err")"
chown -R "$AGENT_UID:$AGENT_GID" "$T/tok" "$T/state"
start_agent
expect_exit 0 "audit log-key" cli "$STRANGER_UID" audit log-key
sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$T/out" > "$T/logkey.pem"
expect_exit 0 "audit export" cli "$AUDITOR_UID" audit export
cp "$T/out" "$T/full.jsonl"
check "the export shows both values of the repeated key" python3 - "$T/full.jsonl" <<'PY'
import json, sys
signs = [json.loads(l) for l in open(sys.argv[1]) if '"SIGN"' in l]
assert len(signs) == 20, len(signs)
for e in signs:
    b = e["annotations"]["build"]
    assert isinstance(b, list) and len(b) == 2 and b[1] == "dup-" + b[0], e["annotations"]
    assert isinstance(e["annotations"]["source"], str), e["annotations"]
PY
expect_exit 0 "audit verify of the export" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/full.jsonl"

# tamper NAME PYTHON: a copy of the export with one SIGN entry edited
tamper() {
        python3 - "$T/full.jsonl" "$T/t-$1.jsonl" "$2" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
i = next(i for i, l in enumerate(lines) if '"SIGN"' in l)
e = json.loads(lines[i])
exec(sys.argv[3])
lines[i] = json.dumps(e, separators=(",", ":"))
open(sys.argv[2], "w").write("".join(l + "\n" for l in lines))
PY
        expect_exit 1 "$1: verify fails" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/t-$1.jsonl"
        check "$1: the failure names the annotations" grep -q 'field "annotations" does not match' "$T/err"
}
tamper "the first value edited" 'e["annotations"]["build"][0] = "999"'
tamper "the second value edited" 'e["annotations"]["build"][1] = "dup-999"'
tamper "one value shown (the last)" 'e["annotations"]["build"] = e["annotations"]["build"][1]'
tamper "the values swapped" 'e["annotations"]["build"].reverse()'
tamper "a third value added" 'e["annotations"]["build"].append("x")'

# the CSV export shows them too (the annotations cell is the JSON object)
expect_exit 0 "audit export --format csv" cli "$AUDITOR_UID" audit export --format csv
check "the CSV cell holds both values" grep -q '"build"":\[""0"",""dup-0""\]' "$T/out"
stop_agent
finish
