#!/bin/bash
# A purge killed half way (review finding M3, docs/log-tiles.md "Retention"):
# the agent is killed (SIGKILL) after a purge has rewritten a segment with
# its stubs but before it rewrote the published entry bundles and removed
# the index rows — held there by strace, which delays the purge's fsync of
# the log directory after the rename (the second one: the first makes the
# purge's pending mark durable). Before the fix, the purged bodies stayed
# published and their digests findable for good. Now the next start finds
# the mark, rebuilds the index from the segments, rewrites the bundles,
# logs a PURGE entry for it and removes the mark once that entry is durable:
# the digests are gone from the bundles and the index, the log and the tiles
# verify, signing works. Then a purge cut short before its rename: nothing
# was purged, the start removes the segment's temporary copy and claims no
# purge, and the operator's next purge does it.
. "$SRCDIR/tests/lib/common.sh"
setup_test
command -v strace >/dev/null || { echo "SKIP: strace is not installed (tests/lib/deps.sh)" >&2; exit 77; }
write_config "publish_entries = yes"
PUB=$T/state/tlog
LOG=$T/state/log
. "$SRCDIR/tests/lib/retention.sh"

# a_second_later: a time (RFC 3339) after every entry logged so far
a_second_later() {
        local t0
        t0=$(date +%s)
        wait_for 10 test "$(date +%s)" -gt "$t0"
        date -u +%Y-%m-%dT%H:%M:%SZ
}
# purge_held WHEN BEFORE STATE_FN NAME: an operator's purge --before BEFORE
# with the WHEN-th fsync of the log directory held by strace, the agent
# killed (SIGKILL) once STATE_FN holds. The agent first, then strace: a
# tracee held in an injected delay dies only when its tracer lets go, and
# strace detaching first would let the purge go on.
purge_held() {
        strace_agent -P "$LOG" -e trace=fsync -e inject=fsync:delay_exit=60000000:when="$1"
        as "$OPERATOR_UID" "$PROVSIGN_CLI" audit purge --before "$2" >"$T/purge.out" 2>&1 &
        local purge_pid=$!
        check "$4" wait_for 60 "$3"
        kill -KILL "$AGENT_PID"
        kill -KILL "$STRACE_PID" 2>/dev/null
        wait "$STRACE_PID" 2>/dev/null
        wait "$AGENT_PID" 2>/dev/null
        AGENT_PID=
        wait "$purge_pid" 2>/dev/null
}

gen_audit_log "$T/tok" "$T/state" 600 2>"$T/gen.err" || fail "gen-audit-log: $(cat "$T/gen.err")"
chown -R "$AGENT_UID:$AGENT_GID" "$T/tok" "$T/state"

start_agent
expect_exit 0 "audit log-key" cli "$STRANGER_UID" audit log-key
sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$T/out" > "$T/logkey.pem"
digests=()
for i in 1 2 3; do
        d=$(random_digest)
        digests+=("$d")
        expect_exit 0 "sign $i" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d"
done
# a digest gen-audit-log signed, in the first (complete) entry bundle: the
# start's publisher rewrites only the partial bundle by itself
expect_exit 0 "audit export before the purge" cli "$AUDITOR_UID" audit export
old=$(python3 -c '
import json, sys
for e in map(json.loads, open(sys.argv[1])):
    if 100 <= e["seq"] < 256 and e["event"] == "SIGN" and (e.get("digest") or "").startswith("sha256:") and not e["digest"].startswith("sha256:00"):
        print(e["digest"][7:]); break' "$T/out")
check "a signed digest of the first bundle (${old:0:12}...)" test -n "$old"
digests+=("$old")
stop_agent
cut=$(split_log)
check "the log is in two segments (the second from entry $cut)" test "$(ls "$LOG"/*.seg | wc -l)" = 2
for d in "${digests[@]}"; do
        check "digest ${d:0:12}... is in the published entry bundles" in_bundles "$d"
done
before=$(a_second_later)

start_agent
# in the window: the segment renamed (its stubs in place, no temporary file
# left), the pending mark durable
in_window() {
        [ -e "$LOG/purge-pending" ] && ! ls "$LOG"/.purge-* >/dev/null 2>&1 && no_bytes "${digests[0]}"
}
purge_held 2 "$before" in_window "the purge rewrote the segment and is held before its bundles (strace)"
check "killed in the window: the pending mark is there" test -e "$LOG/purge-pending"
check "... the purged digest is gone from the segments" no_bytes "${digests[0]}"
check "... but still in the published entry bundles (what the next start must fix)" in_bundles "$old"
check "... and in the index" test "$(index_rows "SELECT count(*) FROM digests WHERE seq < $cut")" -gt 0

start_agent
check "the start says what it did about the purge cut short" \
        grep -q "audit log: a purge of entries 0\.\.[0-9]* older than ${before%Z}\.000000Z may have been cut short; at start the index was rebuilt and their entry bundles published again from the segments" "$T/agent.log"
check "... after rebuilding the index" grep -q "may hold rows of entries an interrupted purge removed: rebuilding it" \
        "$T/agent.log"
check "the pending mark is gone" test ! -e "$LOG/purge-pending"
for d in "${digests[@]}"; do
        check "digest ${d:0:12}... is gone from the published entry bundles" not_in_bundles "$d"
        expect_exit 0 "find of purged digest ${d:0:12}..." cli "$AUDITOR_UID" audit find --digest "sha256:$d"
        check "... finds nothing" test ! -s "$T/out"
done
expect_exit 0 "sign after the recovery" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"
expect_exit 0 "audit export" cli "$AUDITOR_UID" audit export
cp "$T/out" "$T/export.jsonl"
check "the export verifies" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/export.jsonl"
check "... and holds the PURGE entry of the recovery" python3 -c '
import base64, json, sys
assert any(e["event"] == "PURGE" and b"interrupted purge" in base64.b64decode(e["leaf"])
           for e in map(json.loads, open(sys.argv[1]))), "no PURGE entry of the recovery"' "$T/export.jsonl"
stop_agent
expect_eq "$(index_rows "SELECT count(*) FROM digests WHERE seq < $cut")" 0 \
        "the index has no digest rows of the purged segment left"
check "audit verify --tiles passes (the rewritten bundles' stubs hash to their leaves)" \
        "$PROVSIGN_CLI" audit verify --tiles "$PUB" --log-key "$T/logkey.pem"
start_agent
check "a second start has nothing to recover" bash -c '[ "$(grep -c "may have been cut short; at start" "$1")" = 1 ]' _ \
        "$T/agent.log"

# ---- Cut short before the rename: the mark is durable, the segment's new
# copy (.purge-<segment>) written, the segment itself untouched (strace holds
# the first fsync of the log directory: the mark's). Nothing was purged: the
# start removes the copy and says only that the purge "may have been cut
# short"; the operator's next purge does it. ----
late=()
for i in 1 2; do
        d=$(random_digest)
        late+=("$d")
        expect_exit 0 "late sign $i" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d"
done
stop_agent
cut2=$(split_log)
check "a second closed segment (up to entry $cut2)" test "$(ls "$LOG"/*.seg | wc -l)" = 3
before2=$(a_second_later)
start_agent
before_rename() {
        [ -e "$LOG/purge-pending" ] && ls "$LOG"/.purge-*.seg >/dev/null 2>&1
}
purge_held 1 "$before2" before_rename \
        "the purge wrote its mark and the segment's copy, and is held before the rename (strace)"
check "... the late digests are still in the segments (nothing renamed)" has_bytes "${late[0]}"
start_agent
check "the start removes the copy left behind" grep -q "removed $LOG/\.purge-.*\.seg, left by a purge cut short" "$T/agent.log"
check "... and there is none left" bash -c '! ls "$1"/.purge-* >/dev/null 2>&1' _ "$LOG"
check "the pending mark is gone" test ! -e "$LOG/purge-pending"
check "the start says the purge may have been cut short (and claims no purge)" \
        bash -c '[ "$(grep -c "may have been cut short; at start" "$1")" = 2 ]' _ "$T/agent.log"
check "the late digests are still in the segments" has_bytes "${late[0]}"
expect_exit 0 "the operator purges again" cli "$OPERATOR_UID" audit purge --before "$before2" --json
check "... which purges the late entries" test "$(jq -r .purged "$T/out")" -ge 2
for d in "${late[@]}"; do
        check "late digest ${d:0:12}... is gone from the segments" no_bytes "$d"
        # (the partial bundle is the publisher's, which the PURGE entry wakes)
        check "... and from the published entry bundles" wait_for 30 not_in_bundles "$d"
done
stop_agent
finish
