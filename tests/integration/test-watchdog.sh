#!/bin/bash
# The systemd watchdog notices a failed log (docs/hardening.md,
# "Watchdog"): once the audit log has failed for good (here: it cannot grow
# past RLIMIT_FSIZE), every Sign is refused until a restart, so the agent
# stops sending WATCHDOG=1 and says why in STATUS=; systemd's WatchdogSec=
# then restarts it. Before, the pings went on and the agent refused every
# Sign until someone noticed.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
# the stand-in service manager: NOTIFY_SOCKET, every datagram a line
notify_standin "$T/n"
AGENT_ENV="NOTIFY_SOCKET=$T/n/notify WATCHDOG_USEC=1000000"
pings() { count_lines '^WATCHDOG=1$' "$T/n/log"; }

start_agent
for i in 1 2 3; do
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" >/dev/null || fail "sign $i"
done
# The running agent's RLIMIT_FSIZE lowered: its segment may grow by a few
# hundred bytes more, then a write fails and the log fails for good.
size=$(du -cb "$T"/state/log/*.seg | tail -1 | cut -f1)
# (as the agent's uid: root may lack CAP_SYS_RESOURCE in a container)
setpriv --reuid="$AGENT_UID" --regid="$AGENT_GID" --clear-groups prlimit --pid "$AGENT_PID" --fsize=$((size + 600)) ||
        fail "prlimit --fsize on the agent"
check "the agent pings the watchdog while its log works" wait_for 60 eval '[ "$(pings)" -ge 2 ]'
failed=0
for i in $(seq 1 40); do
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" >/dev/null 2>"$T/err"
        if [ $? = 3 ] && grep "^UNAVAILABLE" "$T/err" >/dev/null; then failed=1; break; fi
done
check "the log failed: Signs are refused UNAVAILABLE" [ "$failed" = 1 ]
check "STATUS= says the log failed and the pings stopped" \
        wait_for 30 grep -q "^STATUS=the audit log has failed: every Sign is refused until a restart; watchdog pings stopped" "$T/n/log"
n0=$(pings)
sleep 3 # six ping intervals (WATCHDOG_USEC=1s: one ping per 0.5 s while healthy)
n1=$(pings)
expect_eq "$n1" "$n0" "no WATCHDOG=1 after the log failed (the service manager restarts the agent)"
check "the agent says so in its log" grep -q "watchdog pings stop" "$T/agent.log"
check "the agent is still up (the restart is the service manager's)" agent_alive
kill -TERM "$AGENT_PID"; wait "$AGENT_PID"; AGENT_PID=
finish
