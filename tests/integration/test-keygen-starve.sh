#!/bin/bash
# The key generator's priority (docs/hardening.md, "Key generation"): at
# SCHED_IDLE a generation gets only the CPU the agent's other threads leave,
# so it must be able to go back to nice 0, which RLIMIT_NICE must allow.
#
# 1. (where prlimit may raise RLIMIT_NICE) RLIMIT_NICE 20: SCHED_IDLE; the
#    agent and a busy loop share one CPU (taskset), so the generator never
#    finds idle CPU; after 1 s the generation goes on at nice 0, the rotation
#    completes, and the generator is back at SCHED_IDLE after it.
# 2. RLIMIT_NICE 0, SCHED_IDLE asked for (PROVSIGN_KEYGEN_PRIORITY=idle): the
#    agent says that the starved generation cannot go on at normal priority,
#    and it completes once the CPU is idle.
# 3. RLIMIT_NICE 0, nothing asked: the agent chooses the normal priority for
#    the generator (says so), and a rotation completes on the busy CPU.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config "hsm_timeout = 60s"

HOG=
start_hog() { taskset -c 0 sh -c 'while :; do :; done' & HOG=$!; }
stop_hog() { [ -n "$HOG" ] && kill "$HOG" 2>/dev/null; wait "$HOG" 2>/dev/null; HOG=; }
on_cleanup stop_hog
# keygen_policy: the scheduling policy of the agent's provsign-keygen thread (0 normal, 5 SCHED_IDLE)
keygen_policy() {
        local f
        for f in /proc/"$AGENT_PID"/task/*; do
                [ "$(cat "$f/comm" 2>/dev/null)" = provsign-keygen ] && awk '{print $41}' "$f/stat"
        done
}

# Raising a hard RLIMIT_NICE needs CAP_SYS_RESOURCE, which root in a
# container may lack: then part 1 does not run (said below).
if prlimit --nice=20:20 true 2>/dev/null; then
        AGENT_PREFIX=(prlimit --nice=20:20 taskset -c 0)
        start_agent
        expect_eq "$(keygen_policy)" 5 "RLIMIT_NICE 20: the generator is at SCHED_IDLE"
        start_hog
        expect_exit 0 "an RSA-3072 rotation completes on a CPU that is never idle" \
                cli "$OPERATOR_UID" key rotate --principal ci-rsa
        stop_hog
        check "the starved generation went on at normal priority" \
                grep -q "key generator: a generation waited 1000 ms for idle CPU; it goes on at normal priority" "$T/agent.log"
        expect_eq "$(keygen_policy)" 5 "the generator is back at SCHED_IDLE after it"
        stop_agent
else
        echo "note: prlimit --nice=20:20 is refused here (no CAP_SYS_RESOURCE): part 1 (the way back to nice 0) does not run"
fi

AGENT_PREFIX=(prlimit --nice=0:0 taskset -c 0)
AGENT_ENV="PROVSIGN_KEYGEN_PRIORITY=idle"
start_agent
expect_eq "$(keygen_policy)" 5 "PROVSIGN_KEYGEN_PRIORITY=idle: the generator is at SCHED_IDLE"
start_hog
cli "$OPERATOR_UID" key rotate --principal ci-rsa > "$T/rot.out" 2>&1 &
ROT=$!
check "without RLIMIT_NICE room the agent says it cannot raise the starved generation" \
        wait_for 60 grep -q "key generator: a generation has waited 1000 ms for idle CPU and cannot go on at normal priority" "$T/agent.log"
stop_hog
wait "$ROT"
expect_eq "$?" 0 "the rotation completes once the CPU is idle"
stop_agent

AGENT_ENV=
start_agent
expect_eq "$(keygen_policy)" 0 "RLIMIT_NICE 0: the agent runs the generator at the normal priority"
check "... and says why" grep -q "key generator at normal priority: RLIMIT_NICE does not allow" "$T/agent.log"
start_hog
expect_exit 0 "a rotation completes on a busy CPU" cli "$OPERATOR_UID" key rotate --principal ci-rsa
stop_hog
stop_agent
finish
