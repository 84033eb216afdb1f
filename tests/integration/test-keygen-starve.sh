#!/bin/bash
# A key generation at SCHED_IDLE cannot starve (docs/hardening.md, "Key
# generation"): the agent and a busy loop share one CPU (taskset), so the
# generator thread never finds idle CPU. After 1 s the generation goes on at
# normal priority (RLIMIT_NICE allows nice 0 here, as the unit's
# LimitNICE=+0 does) and the rotation completes; with RLIMIT_NICE 0 the
# agent says that it cannot, and the generation waits for the CPU.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config "hsm_timeout = 60s"

HOG=
stop_hog() { [ -n "$HOG" ] && kill "$HOG" 2>/dev/null; wait "$HOG" 2>/dev/null; HOG=; }
on_cleanup stop_hog

# rotate_starved: an RSA-3072 rotation of ci-rsa while a busy loop holds the agent's CPU
rotate_starved() {
        taskset -c 0 sh -c 'while :; do :; done' &
        HOG=$!
        expect_exit 0 "$1" cli "$OPERATOR_UID" key rotate --principal ci-rsa
        stop_hog
}

# Raising a hard RLIMIT_NICE needs CAP_SYS_RESOURCE, which root in a
# container may lack: then only the second part runs (said below).
if prlimit --nice=20:20 true 2>/dev/null; then
        AGENT_PREFIX=(prlimit --nice=20:20 taskset -c 0)
        start_agent
        rotate_starved "an RSA-3072 rotation completes on a CPU that is never idle"
        check "the starved generation went on at normal priority" \
                grep -q "key generator: a generation waited 1000 ms for idle CPU; it goes on at normal priority" "$T/agent.log"
        check "the generator is back at SCHED_IDLE after it" \
                [ "$(awk '{print $41}' /proc/"$AGENT_PID"/task/*/stat | grep -c '^5$')" = 1 ]
        stop_agent
else
        echo "note: prlimit --nice=20:20 is refused here (no CAP_SYS_RESOURCE): the raised generation is not checked"
fi

AGENT_PREFIX=(prlimit --nice=0:0 taskset -c 0)
start_agent
taskset -c 0 sh -c 'while :; do :; done' &
HOG=$!
cli "$OPERATOR_UID" key rotate --principal ci-rsa > "$T/rot.out" 2>&1 &
ROT=$!
check "without RLIMIT_NICE room the agent says it cannot raise the generation" \
        wait_for 60 grep -q "key generator: a generation has waited 1000 ms for idle CPU and cannot go on at normal priority" "$T/agent.log"
stop_hog
wait "$ROT"
expect_eq "$?" 0 "the rotation completes once the CPU is idle"
stop_agent
finish
