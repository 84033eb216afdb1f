#!/bin/bash
# `provsign status` says when the audit log has failed (docs/cli.md,
# "Degraded agent"). The log is made to fail on the running agent: strace
# injects ENOSPC (a full disk) into the agent's writes to its current log
# segment (-P), as test-fdatasync injects EIO into fdatasync. (RLIMIT_FSIZE
# does not do here: the audit index, a SQLite file, is bigger than the log
# and fails first, and prlimit on the running agent needs CAP_SYS_RESOURCE.)
# - before: status exits 0, no "audit log state:" line, JSON log_failed
#   false, provsign_log_failed 0;
# - once a Sign is withheld: status prints the whole status plus
#   "audit log state:   FAILED: ...", "warning: the audit log has failed;
#   ..." on stderr, and still exits 0 (the agent answered; 3 is "refused");
#   --json says "log_failed": true; provsign_log_failed 1; other requests
#   are still answered;
# - after a restart: healthy again (exit 0, false, 0).
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config "hsm_timeout = 120s"   # no speed test here
start_agent

DEGRADED_ERR="warning: the audit log has failed; nothing is signed until the agent is restarted"
# json_field FILE KEY: the value of KEY in the JSON object in FILE (python's repr)
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

healthy() {
        local when=$1
        expect_exit 0 "$when: status exits 0" cli "$STRANGER_UID" status
        check "$when: status has the audit log line" grep -q '^audit log: ' "$T/out"
        check "$when: ... and no \"audit log state:\" line" bash -c "! grep -q '^audit log state:' '$T/out'"
        check "$when: ... and nothing on stderr" test ! -s "$T/err"
        expect_exit 0 "$when: status --json exits 0" cli "$STRANGER_UID" status --json
        expect_eq "$(json_field "$T/out" log_failed)" False "$when: \"log_failed\": false"
        check "$when: provsign_log_failed 0" metric_is provsign_log_failed 0
}

expect_exit 0 "a Sign before the fault" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"
healthy "before the fault"
expect_exit 0 "status --json of the runner" cli "$RUNNER_UID" status --json
cp "$T/out" "$T/healthy.json"

# ---- the disk is full: every write to the segment fails with ENOSPC ----
SEG=$(agent_segments)
check "the agent has one log segment open ($SEG)" test "$(printf '%s\n' "$SEG" | grep -c .)" = 1
strace_agent -P "$SEG" -e trace=write,writev,pwrite64,pwritev -e inject=write,writev,pwrite64,pwritev:error=ENOSPC
expect_exit 3 "the next Sign is withheld (exit 3)" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"
expect_eq "$(cat "$T/err")" "UNAVAILABLE: the audit log cannot record the signature, so it was withheld" \
        "... the log could not record it"
check "strace injected ENOSPC into a write of the segment" grep -q 'write.*= -1 ENOSPC .*(INJECTED)' "$T/strace.out"
check "the agent names the failure (ENOSPC)" \
        grep -q 'audit log: committing entries [0-9]*\.\.[0-9]* failed (No space left on device); signing stops until the agent is restarted' "$T/agent.log"
strace_detach

expect_exit 0 "status of a degraded agent answers (exit 0)" cli "$STRANGER_UID" status
expect_eq "$(cat "$T/err")" "$DEGRADED_ERR" "... stderr: $DEGRADED_ERR"
check "... stdout still has the whole status (version, token, audit log)" \
        bash -c "grep -q '^agent version: ' '$T/out' && grep -q '^token: ' '$T/out' && grep -q '^audit log: ' '$T/out'"
expect_eq "$(grep '^audit log state:' "$T/out")" \
        "audit log state:   FAILED: nothing is signed until the agent is restarted" "... and says the audit log has failed"
expect_exit 0 "status --json of a degraded agent answers (exit 0)" cli "$RUNNER_UID" status --json
expect_eq "$(json_field "$T/out" log_failed)" True "... \"log_failed\": true"
expect_eq "$(json_field "$T/out" caller_principals)" "$(json_field "$T/healthy.json" caller_principals)" \
        "... and the rest of the status (caller_principals as before)"
expect_eq "$(cat "$T/err")" "$DEGRADED_ERR" "... stderr: $DEGRADED_ERR"
check "provsign_log_failed 1" metric_is provsign_log_failed 1
expect_exit 0 "other requests are still answered (audit log-key)" cli "$STRANGER_UID" audit log-key
expect_exit 3 "a later Sign is refused" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"
expect_eq "$(cat "$T/err")" "UNAVAILABLE: the audit log has failed; nothing is signed" "... UNAVAILABLE, the log has failed"
check "the agent is still up" agent_alive
stop_agent

# ---- a restart ends it ----
start_agent
expect_exit 0 "after a restart, signing works again" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"
healthy "after the restart"
stop_agent
finish
