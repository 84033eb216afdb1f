#!/bin/bash
# The permission matrix of docs/operations.md, every request x every kind of caller:
# a signer of P, a signer of Q, an operator, an auditor, a stranger in the
# socket group. Requests a caller may make get their own answer (OK, or the
# exact status the request's content earns: NOT_FOUND for the all-zero
# keyid, INVALID_ARGUMENT for a Find that names nothing); the
# others must be PERMISSION_DENIED. Supplementary groups count.
. "$SRCDIR/tests/lib/common.sh"
setup_test

# A real user with a supplementary group, to prove gids= matches groups the
# kernel does not report in SO_PEERCRED (getgrouplist of the uid).
SUP_USER=provsign-it-sup
SUP_GROUP=provsign-it-supg
add_test_group "$SUP_GROUP" 64930
add_test_user "$SUP_USER" 64931 -g users -G "$SUP_GROUP"

write_config
cat >> "$CONF" <<CONF

[principal ci-sup]
gids = $SUP_GROUP
CONF
start_agent

# caller kind -> uid, principal it signs for (P), and its allowed set
matrix() {
        local who=$1 uid=$2 principal=$3 allowed=$4
        as "$uid" env PYTHONPATH="$SRCDIR/tests/lib" SOCK="$SOCK" python3 - "$who" "$principal" "$allowed" <<'PY'
import os, sys
from rawclient import *
who, principal, allowed = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
# the answer an allowed request gets (rawclient.all_requests' payloads)
answer = {"RevokeKey": "NOT_FOUND", "DestroyKey": "NOT_FOUND", "Find": "INVALID_ARGUMENT"}
bad = 0
for name, payload in all_requests(principal).items():
    st, msg, _ = call(os.environ["SOCK"], payload)
    want = answer.get(name, "OK") if name in allowed else "PERMISSION_DENIED"
    ok = st == want
    print("%s %s: %s %s -> %s (wanted %s) %s" % ("ok:" if ok else "FAIL:", who, name,
          "allowed" if name in allowed else "denied", st, want, "" if ok else msg))
    bad += not ok
sys.exit(1 if bad else 0)
PY
}

ANY="Status,GetPublicKey,GetKeyBundle,GetCheckpoint,GetLogKey"
run_matrix() {
        if matrix "$@" > "$T/m" 2>&1; then
                CHECKS=$((CHECKS + $(grep -c '^ok:' "$T/m")))
                pass "permission matrix row: $1 ($(grep -c '^ok:' "$T/m") requests)"
        else
                cat "$T/m" >&2
                fail "permission matrix row: $1"
        fi
}
run_matrix "signer of ci-release signing ci-release" "$RUNNER_UID" ci-release "$ANY,Sign"
run_matrix "signer of ci-nightly asking for ci-release" "$RUNNER2_UID" ci-release "$ANY"
run_matrix "operator" "$OPERATOR_UID" ci-release "$ANY,ListKeys,RotateKey,RevokeKey,DestroyKey"
run_matrix "auditor" "$AUDITOR_UID" ci-release "$ANY,Export,Find,Proof"
run_matrix "stranger in the socket group" "$STRANGER_UID" ci-release "$ANY"
run_matrix "user whose supplementary group is in ci-sup's gids" 64931 ci-sup "$ANY,Sign"
run_matrix "same user asking for ci-release" 64931 ci-release "$ANY"

check "every refusal was logged" test "$(grep -c 'refused .*PERMISSION_DENIED' "$T/agent.log")" -ge 40

# Refusal entries in the audit log are rate-limited per uid: a flood of 60
# refusals from one uid adds at most 20 entries, then one summary entry of
# the other 40 when the window closes (here: at shutdown, unless the
# window's 60 s pass first). Counted in the log itself after a restart,
# not from log_size (the committed size, which lags the appended entries
# by a group commit).
flood() {
        as "$OUTSIDER_UID" true
        as "$1" env PYTHONPATH="$SRCDIR/tests/lib" SOCK="$SOCK" python3 -c '
import os
from rawclient import *
for i in range(60):
    st, msg, _ = call(os.environ["SOCK"], all_requests("ci-release")["ListKeys"])
    assert st == "PERMISSION_DENIED", st'
}
# a fresh uid, so earlier refusals in this test do not count
FLOOD_UID=64940
check "60 refused requests from one uid" flood "$FLOOD_UID"
expect_exit 0 "a signature after the flood" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" --json
stop_agent
start_agent
expect_exit 0 "audit export after the restart" cli "$AUDITOR_UID" audit export
check "the log took 20 refusal entries of that uid, not 60, and one summary of the other 40 before the agent stopped" \
        python3 - "$T/out" "$FLOOD_UID" <<'PY'
import base64, json, os, sys
sys.path.insert(0, os.environ["SRCDIR"] + "/tests/lib")
from rawclient import fields
entries, uid = [json.loads(l) for l in open(sys.argv[1])], int(sys.argv[2])
refused = [e for e in entries if e.get("event") == "REFUSED" and e.get("uid") == uid]
summary = [e for e in entries if e.get("event") == "REFUSED_SUMMARY" and e.get("uid") == uid]
assert len(refused) == 20, "%d REFUSED entries" % len(refused)
assert len(summary) == 1, "%d REFUSED_SUMMARY entries" % len(summary)
suppressed = fields(base64.b64decode(summary[0]["leaf"])).get(17, [0])[0]   # AuditEntry.suppressed
assert suppressed == 40, "the summary counts %d" % suppressed
stop = [e["seq"] for e in entries if e.get("event") == "AGENT_STOP"]
assert stop and max(e["seq"] for e in refused) < summary[0]["seq"] < stop[0], (summary[0]["seq"], stop)
PY
finish
