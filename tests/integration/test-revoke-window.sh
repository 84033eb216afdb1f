#!/bin/bash
# A revocation without --compromised-since is dated by its own KEY_REVOKE
# entry (docs/hardening.md, "Revocation time"): with auto_rotate_on_revoke the key keeps signing
# while its RSA-3072 successor is generated, and every signature returned
# meanwhile must stay valid (its log time before compromised_since), so the
# compromise time cannot be the time the request came.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config "auto_rotate_on_revoke = yes" "hsm_timeout = 120s"
start_agent

keys_json() { python3 -c 'import json,sys; t=open(sys.argv[1]).read().strip(); d=json.loads(t) if t.startswith("[") else [json.loads(l) for l in t.splitlines() if l.strip()]; [print(k["keyid"], k["state"], k.get("compromised_since")) for k in d]' "$1"; }
expect_exit 0 "key list" cli "$OPERATOR_UID" key list --principal ci-rsa --json
KEY=$(keys_json "$T/out" | awk '$2 == "active" { print $1; exit }')
[ -n "$KEY" ] || { echo "FAIL: no active key of ci-rsa" >&2; exit 1; }

# A signer of ci-rsa signs back to back on one connection throughout.
mkdir -p "$T/p" && chmod 0777 "$T/p"
as "$RUNNER_UID" python3 "$SRCDIR/tests/lib/signprobe.py" "$SOCK" ci-rsa "$T/p/stop" "$T/p/probe.calls" &
PROBE=$!
check "the probe signs" wait_for 60 test -s "$T/p/probe.calls"
expect_exit 0 "revoke the active RSA key without --compromised-since (a successor is generated)" \
        cli "$OPERATOR_UID" key revoke --key "$KEY" --reason "revocation window test"
# the probe goes on with the successor: a Sign begun after the revoke returned
now_ms() { python3 -c 'import time; print(int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000))'; }
t_rev=$(now_ms)
signed_after() { awk -v t="$t_rev" '$1 >= t && $3 == "OK" { f = 1 } END { exit !f }' "$T/p/probe.calls"; }
check "the probe signs with the successor after the revoke" wait_for 60 signed_after
touch "$T/p/stop"
wait "$PROBE"
check "the probe signed throughout" test "$(awk '$3 == "OK"' "$T/p/probe.calls" | wc -l)" -gt 0

expect_exit 0 "key list after the revoke" cli "$OPERATOR_UID" key list --principal ci-rsa --json
SINCE=$(keys_json "$T/out" | awk -v k="$KEY" '$1 == k { print $3 }')
expect_exit 0 "audit export" cli "$AUDITOR_UID" audit export
cp "$T/out" "$T/export.jsonl"
python3 - "$T/export.jsonl" "$KEY" "$SINCE" "$T/p/probe.calls" > "$T/window" 2>&1 <<'PY'
import json, sys
from datetime import datetime
path, key, since, calls = sys.argv[1:5]
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
es = [e for e in map(json.loads, open(path)) if "event" in e]
rev = [e for e in es if e["event"] == "KEY_REVOKE" and e.get("keyid") == key]
assert len(rev) == 1, rev
assert t(since) == t(rev[0]["time"]), "compromised_since %s is not the KEY_REVOKE entry's time %s" % (since, rev[0]["time"])
signs = [e for e in es if e["event"] == "SIGN" and e.get("keyid") == key]
late = [e for e in signs if t(e["time"]) >= t(since)]
assert not late, "%d signatures of the revoked key logged at or after compromised_since: %r" % (len(late), late[:2])
# every OK the probe got is in the log (the digest), so none was returned unlogged
logged = {e["digest"].split(":")[-1] for e in es if e["event"] == "SIGN"}
ok = [l.split()[3] for l in open(calls) if l.split()[2] == "OK"]
missing = [d for d in ok if d not in logged]
assert not missing, "returned but not logged: %r" % missing[:3]
print("revoke at %s; %d signatures of the revoked key, all before it; %d probe signatures" % (since, len(signs), len(ok)))
PY
rc=$?
cat "$T/window"
expect_eq "$rc" 0 "compromised_since is the KEY_REVOKE entry's time, and no signature of the key is at or after it"
stop_agent
finish
