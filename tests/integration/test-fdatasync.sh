#!/bin/bash
# A failed fdatasync of the audit log fails the log closed (docs/auditing.md,
# "Write-ahead, group commit"), shown on the real agent process: strace
# injects EIO into the fdatasync calls on the current log segment (-P) once
# two traced Signs went through, while the write before each still succeeds.
# - Signs before the failure are answered OK;
# - the Sign of the group whose fdatasync failed gets no signature:
#   UNAVAILABLE (CLI exit 3), "the audit log cannot record the signature,
#   so it was withheld";
# - every later Sign (8 at once, other principals, after strace is gone)
#   is refused: UNAVAILABLE "the audit log has failed; nothing is signed",
#   while other requests are still served;
# - the agent's stderr names the failure (the entries, the errno);
# - after a restart, every signature that was answered OK is in the log,
#   which `provsign audit verify` checks whole, and signing works again.
. "$SRCDIR/tests/lib/common.sh"
setup_test
command -v strace >/dev/null || { echo "SKIP: strace is not installed (tests/lib/deps.sh)" >&2; exit 77; }
write_config "hsm_timeout = 120s"   # no speed test: slow answers on a loaded machine are no failure
mkdir -m 0777 "$T/m"
PY="env PYTHONPATH=$SRCDIR/tests/lib python3"
start_agent

# sign DIGEST_HEX NAME: a CLI Sign of ci-release; NAME.rc, NAME.out, NAME.err
sign() {
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$1" --json > "$T/m/$2.out" 2> "$T/m/$2.err"
        echo $? > "$T/m/$2.rc"
}
: > "$T/ok-digests"
for i in 1 2 3; do
        d=$(random_digest)
        sign "$d" "before-$i"
        expect_eq "$(cat "$T/m/before-$i.rc")" 0 "Sign $i before the fault is answered"
        echo "$d" >> "$T/ok-digests"
done

# ---- strace on every thread of the agent: first tracing only, then with
# EIO injected into every fdatasync on the segment (strace counts `when=`
# per thread, and a group is synced by whichever worker or committer
# commits it, so the fault is armed by attaching again) ----
SEG=$(agent_segments)
check "the agent has one log segment open ($SEG)" test "$(printf '%s\n' "$SEG" | grep -c .)" = 1
strace_agent -P "$SEG" -e trace=fdatasync

for i in 1 2; do
        d=$(random_digest)
        sign "$d" "traced-$i"
        expect_eq "$(cat "$T/m/traced-$i.rc")" 0 "Sign $i under strace (fdatasync $i of the segment) is answered"
        echo "$d" >> "$T/ok-digests"
done
strace_detach
expect_eq "$(grep -c '^[0-9]* *fdatasync(.*= 0$' "$T/strace.out")" 2 "... two fdatasyncs of the segment traced, both succeeded"

strace_agent -P "$SEG" -e trace=fdatasync -e inject=fdatasync:error=EIO
# the next fdatasync fails: its group's Sign gets no signature
d=$(random_digest)
sign "$d" failed
echo "$d" > "$T/withheld-digests"
expect_eq "$(cat "$T/m/failed.rc")" 3 "the Sign whose group's fdatasync failed is refused (exit 3)"
expect_eq "$(cat "$T/m/failed.err")" "UNAVAILABLE: the audit log cannot record the signature, so it was withheld" \
        "... UNAVAILABLE \"the audit log cannot record the signature, so it was withheld\""
check "... with nothing on stdout" test ! -s "$T/m/failed.out"
check "strace injected EIO into fdatasync of the segment" grep -q '^[0-9]* *fdatasync(.*= -1 EIO .*(INJECTED)' "$T/strace.out"
expect_eq "$(grep -c '^[0-9]* *fdatasync(' "$T/strace.out")" 1 "... that one fdatasync traced, and none after it (nothing is committed any more)"

check "8 Signs at once afterwards: all UNAVAILABLE, none with a signature" \
        as "$RUNNER_UID" $PY - "$SOCK" <<'PY'
import os, sys
from rawclient import *
conns = [connect(sys.argv[1]) for _ in range(8)]
for s in conns:
    s.settimeout(60)
    s.sendall(frame(sign_request("ci-release", os.urandom(32))))
r = [read_response(s) for s in conns]
assert all(x[0] == "UNAVAILABLE" and x[1] == "the audit log has failed; nothing is signed" and 10 not in x[2]
           for x in r), r
PY
d=$(random_digest)
sign "$d" after
expect_eq "$(cat "$T/m/after.rc")" 3 "a later Sign is refused (exit 3)"
expect_eq "$(cat "$T/m/after.err")" "UNAVAILABLE: the audit log has failed; nothing is signed" "... UNAVAILABLE \"the audit log has failed; nothing is signed\""
check "... with nothing on stdout" test ! -s "$T/m/after.out"
expect_exit 3 "a Sign of another principal is refused too" \
        cli "$MULTI_UID" sign --principal ci-nightly --digest "sha384:$(od -An -N48 -tx1 /dev/urandom | tr -d ' \n')"
expect_stderr_prefix "UNAVAILABLE: the audit log has failed" "... the same way"
expect_exit 0 "status answers a degraded agent (exit 0, docs/cli.md)" cli "$STRANGER_UID" status
expect_stderr_prefix "warning: the audit log has failed" "... and warns that the audit log has failed"
expect_exit 0 "other requests are still served (audit log-key)" cli "$STRANGER_UID" audit log-key
check "the agent names the failure: the entries and EIO" \
        grep -q 'audit log: committing entries [0-9]*\.\.[0-9]* failed (Input/output error); signing stops until the agent is restarted' "$T/agent.log"

strace_detach
check "the agent is still up" agent_alive
expect_exit 3 "still refused without strace (until a restart)" \
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"
stop_agent

# ---- after a restart: every signature answered OK is in the log ----
start_agent
expect_exit 0 "after a restart, signing works again" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"
expect_exit 0 "the log key" cli "$STRANGER_UID" audit log-key
sed -n "/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p" "$T/out" > "$T/logkey.pem"
expect_exit 0 "audit export" cli "$AUDITOR_UID" audit export
cp "$T/out" "$T/export.jsonl"
expect_exit 0 "provsign audit verify checks the whole log" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/export.jsonl"
check "every one of the 5 signatures answered OK is a SIGN entry of the log" python3 - "$T/export.jsonl" "$T/ok-digests" <<'PY'
import json, sys
logged = {e["digest"] for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "SIGN" and e.get("status") == "OK"}
want = ["sha256:" + l.strip() for l in open(sys.argv[2]) if l.strip()]
missing = [d for d in want if d not in logged]
assert len(want) == 5 and not missing, missing
PY
# (the withheld Sign's entry was written before its fdatasync failed: it
# may be on disk, an entry whose signature nobody received; not an error)
echo "the withheld Sign's entry after the restart: $(grep -c "$(cat "$T/withheld-digests")" "$T/export.jsonl") in the log"
# and the receipts of those answered under strace verify against the log key
for i in 1 2; do
        check "the receipt of Sign $i under strace verifies" \
                "$PROVSIGN_CLI" receipt verify --log-key "$T/logkey.pem" "$T/m/traced-$i.out"
done
stop_agent
finish
