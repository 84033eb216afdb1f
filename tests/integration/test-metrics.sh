#!/bin/bash
# provsign metrics: after a known sequence (N signatures, refusals of known
# kinds, one rotation, one token outage through p11-kit server) the counters
# equal what happened; histograms count the requests; promtool accepts the
# Prometheus text and Debian's prometheus_client parses the OpenMetrics text;
# the packaged provsign-metrics units pass systemd-analyze verify and the
# service's command, run as written, writes a file promtool accepts.
. "$SRCDIR/tests/lib/common.sh"
setup_test
. "$SRCDIR/tests/lib/p11server.sh"
p11_setup
start_p11
MODULE=$CLIENT_MODULE
write_config
start_agent

PY=/usr/bin/python3 # Debian's, with python3-prometheus-client
# metric NAME{LABELS}: its value in the Prometheus text, 0 when absent.
metric() {
        cli "$STRANGER_UID" metrics --format prometheus >"$T/m.prom" || { echo "metrics failed" >&2; return 1; }
        awk -v k="$1" '$1 == k {v = $2} END {print v == "" ? 0 : v}' "$T/m.prom"
}

N=5
for _ in $(seq 1 $N); do
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" >/dev/null ||
                fail "a signature"
done
# Refusals of known kinds: 3 Sign by a stranger (PERMISSION_DENIED), 2 Sign
# with a payload type that is not a media type (INVALID_ARGUMENT), 2 Export
# by a runner (PERMISSION_DENIED).
for _ in 1 2 3; do cli "$STRANGER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" >/dev/null 2>&1; done
for _ in 1 2; do cli "$RUNNER_UID" sign --principal ci-release --payload-type 'not a type' --digest "sha256:$(random_digest)" >/dev/null 2>&1; done
for _ in 1 2; do cli "$RUNNER_UID" audit export >/dev/null 2>&1; done

expect_eq "$(metric 'provsign_signatures_total{principal="ci-release",status="OK"}')" "$N" "signatures_total{ci-release,OK} = $N"
expect_eq "$(metric 'provsign_signatures_total{principal="",status="PERMISSION_DENIED"}')" 3 \
        "signatures_total{\"\",PERMISSION_DENIED} = 3 (refused before a principal was granted)"
expect_eq "$(metric 'provsign_refusals_total{request="Sign",reason="PERMISSION_DENIED"}')" 3 "refusals_total{Sign,PERMISSION_DENIED} = 3"
expect_eq "$(metric 'provsign_refusals_total{request="Sign",reason="INVALID_ARGUMENT"}')" 2 "refusals_total{Sign,INVALID_ARGUMENT} = 2"
expect_eq "$(metric 'provsign_refusals_total{request="Export",reason="PERMISSION_DENIED"}')" 2 "refusals_total{Export,PERMISSION_DENIED} = 2"
expect_eq "$(metric 'provsign_sign_duration_seconds_count')" "$N" "the sign latency histogram counts the $N signatures"
expect_eq "$(metric 'provsign_token_sign_duration_seconds_count')" "$N" "the token latency histogram counts $N token calls"
expect_eq "$(metric 'provsign_sign_duration_seconds_bucket{le="+Inf"}')" "$N" "its +Inf bucket too"
check "the log sync histogram has samples" test "$(metric 'provsign_log_sync_duration_seconds_count')" -gt 0
expect_eq "$(metric 'provsign_log_group_commit_entries_sum')" "$(metric provsign_log_entries)" \
        "entries per group commit add up to the log's entries"
check "the log's bytes are counted" test "$(metric provsign_log_bytes)" -gt 0
check "the checkpoint age is there" grep -q '^provsign_checkpoint_age_seconds ' "$T/m.prom"
expect_eq "$(metric provsign_token_up)" 1 "token up"
expect_eq "$(metric provsign_connections)" 1 "one connection open (the one asking)"
expect_eq "$(metric provsign_workers)" "$(grep -lx provsign-worker /proc/"$AGENT_PID"/task/*/comm | wc -l)" \
        "provsign_workers = the agent's provsign-worker threads"
expect_eq "$(metric provsign_workers_busy)/$(metric provsign_workers_queued)" 0/0 "idle: no worker busy, nothing queued"

# One rotation.
rot0=$(metric 'provsign_key_events_total{event="KEY_ROTATE"}')
cli "$OPERATOR_UID" key rotate --principal ci-release >/dev/null || fail "rotate"
expect_eq "$(metric 'provsign_key_events_total{event="KEY_ROTATE"}')" $((rot0 + 1)) "key_events_total{KEY_ROTATE} + 1 after one rotation"

# One token outage and its recovery.
stop_p11
cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" >"$T/out" 2>"$T/err"
check "a Sign during the outage is refused" grep -q HSM_UNAVAILABLE "$T/err"
token_down() { [ "$(metric provsign_token_up)" = 0 ]; }
check "the metrics show the token down" wait_for 20 token_down
start_p11
signs_again() { cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" >/dev/null 2>&1; }
check "signing resumes once the token is back" wait_for 30 signs_again
expect_eq "$(metric provsign_token_outages_total)" 1 "token_outages_total = 1"
recovered() { [ "$(metric provsign_token_recoveries_total)" = 1 ]; }
check "token_recoveries_total = 1" wait_for 20 recovered
expect_eq "$(metric provsign_token_up)" 1 "token up again"
check "the refused Sign is counted as HSM_UNAVAILABLE" \
        test "$(metric 'provsign_signatures_total{principal="ci-release",status="HSM_UNAVAILABLE"}')" -ge 1

# The text formats, checked by other parsers.
cli "$STRANGER_UID" metrics --format prometheus >"$T/m.prom"
promtool check metrics <"$T/m.prom" >"$T/promtool.out" 2>&1
expect_eq "$?" 0 "promtool check metrics accepts the Prometheus text ($(head -c 300 "$T/promtool.out"))"
cli "$STRANGER_UID" metrics >"$T/m.om"
check "the default text ends with # EOF" test "$(tail -1 "$T/m.om")" = "# EOF"
"$PY" - "$T/m.om" "$N" >"$T/om.out" 2>&1 <<'PY'
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
sig = fams["provsign_signatures"]
assert sig.type == "counter", sig.type
ok = [s for s in sig.samples if s.labels == {"principal": "ci-release", "status": "OK"}]
assert ok and ok[0].value >= int(sys.argv[2]), ok
h = fams["provsign_sign_duration_seconds"]
assert h.type == "histogram"
assert fams["provsign_log_entries"].type == "gauge"
print("parsed", len(fams), "families")
PY
expect_eq "$?" 0 "prometheus_client's OpenMetrics parser reads the default text ($(head -c 300 "$T/om.out"))"
# A stranger to the socket group cannot ask at all.
expect_exit 4 "outside the socket group: cannot connect" cli "$OUTSIDER_UID" metrics

# The packaged units: verified, and the service's command run as written
# (its user's part: a member of the socket group) writes what promtool reads.
V=$T/units
mkdir -p "$V/lib/systemd/system" "$V/usr/bin" "$V/var/lib/prometheus/node-exporter"
cp -an /lib/systemd/system/. "$V/lib/systemd/system/"
sed "s|@bindir@|/usr/bin|" "$SRCDIR/packaging/provsign-metrics.service.in" >"$V/lib/systemd/system/provsign-metrics.service"
cp "$SRCDIR/packaging/provsign-metrics.timer" "$V/lib/systemd/system/"
cp "$PROVSIGN_CLI" "$V/usr/bin/provsign"
systemd-analyze verify --man=no --root="$V" provsign-metrics.service provsign-metrics.timer >"$T/verify.out" 2>&1
rc=$?
check "systemd-analyze verify: provsign-metrics units are clean ($(head -c 300 "$T/verify.out"))" \
        bash -c "[ $rc = 0 ] && ! grep -v 'prometheus' '$T/verify.out' | grep -q ."
cmd=$(sed -n 's|^ExecStart=@bindir@/provsign ||p' "$SRCDIR/packaging/provsign-metrics.service.in")
check "the service runs provsign metrics --format prometheus --output" grep -q -- '--format prometheus --output /var/lib/prometheus/node-exporter/provsign.prom' <<<"$cmd"
mkdir -p "$T/textfile"
chmod 0777 "$T/textfile"
# shellcheck disable=SC2086
as "$STRANGER_UID" "$PROVSIGN_CLI" ${cmd//\/var\/lib\/prometheus\/node-exporter/$T/textfile} 2>"$T/err"
expect_eq "$?" 0 "the service's command writes the textfile"
check "promtool reads the written file" promtool check metrics <"$T/textfile/provsign.prom"
check "nothing half-written is left beside it" test "$(ls -A "$T/textfile")" = provsign.prom
stop_agent
finish
