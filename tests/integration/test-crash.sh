#!/bin/bash
# Crash campaign: 16 clients sign on persistent connections (tests/lib/
# signprobe.py, reconnecting after each crash), and 4 more pipeline 8 Signs
# each on one connection (tests/lib/signpipe.py: request ids, replies in any
# order, each receipt checked against its digest), while the agent is killed with
# SIGKILL at a random moment, RUNS times (10 here; PROVSIGN_TEST_CRASH_RUNS=50
# for the long run). Every other run also leaves a torn record at the end of
# the last segment, as a write cut short by power loss would. After each
# kill: the records read back (CRC, contiguous seqs; tests/lib/segread.py),
# the agent starts again (the torn tail is cut). At the end the log's Merkle
# root matches the agent's signed checkpoint and every signature any client
# received has its entry in the log (entries missing must be 0). Then damage
# in the middle of a segment: the agent refuses to start, naming the file and
# the offset.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
RUNS=${PROVSIGN_TEST_CRASH_RUNS:-10}
SEGREAD="python3 $SRCDIR/tests/lib/segread.py"

start_agent
mkdir -p "$T/c"
chmod 0777 "$T/c"
for c in $(seq 1 16); do
        as "$RUNNER_UID" python3 "$SRCDIR/tests/lib/signprobe.py" "$SOCK" ci-release "$T/stop" "$T/c/$c.calls" 20 &
done
PIPE_PIDS=()
for c in $(seq 1 4); do
        as "$RUNNER_UID" python3 "$SRCDIR/tests/lib/signpipe.py" "$SOCK" ci-release "$T/stop" "$T/c/pipe$c.calls" 8 \
                2>"$T/c/pipe$c.err" &
        PIPE_PIDS+=($!)
done

torn=0
for run in $(seq 1 "$RUNS"); do
        # a random moment 0.2..1.4 s into the run
        sleep "$(python3 -c 'import random; print(round(random.uniform(0.2, 1.4), 2))')"
        kill -KILL "$AGENT_PID"
        wait "$AGENT_PID" 2>/dev/null
        AGENT_PID=
        if ! $SEGREAD "$T/state/log" > "$T/seg.json" 2>"$T/seg.err"; then
                fail "run $run: the log does not read back after the kill: $(cat "$T/seg.err")"
        fi
        if [ $((run % 2)) = 0 ]; then
                # half a record: a length, then fewer bytes than it announces
                last=$(ls "$T"/state/log/*.seg | tail -1)
                printf '\x00\x00\x00\x40partial' >> "$last"
                torn=$((torn + 1))
        fi
        start_agent
done
touch "$T/stop"
pipe_failed=0
for j in "${PIPE_PIDS[@]}"; do wait "$j" || pipe_failed=$((pipe_failed + 1)); done
for j in $(jobs -p); do [ "$j" = "$AGENT_PID" ] || wait "$j"; done
expect_eq "$pipe_failed" 0 "every pipelined reply carried a request id in flight and a receipt of its digest $(cat "$T"/c/pipe*.err)"
pass "the agent came back after each of $RUNS kills"
cuts=$(grep -c "cut a torn record" "$T/agent.log")
check "every torn tail was cut at start ($cuts of $torn)" test "$cuts" -ge "$torn"

d=$(random_digest)
expect_exit 0 "signing continues after the campaign" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d"
expect_exit 0 "checkpoint" cli "$STRANGER_UID" audit checkpoint --json
cp "$T/out" "$T/cp.json"
stop_agent
$SEGREAD "$T/state/log" "$T/cp.json" > "$T/seg.json" 2>"$T/seg.err"
expect_eq "$?" 0 "the log's Merkle root matches the agent's checkpoint $(cat "$T/seg.err")"
cat "$T"/c/*.calls > "$T/calls"
read -r received missing entries < <(python3 -c '
import json, sys
logged = set(json.load(open(sys.argv[1]))["sign_digests"])
ok = [l.split()[3] for l in open(sys.argv[2]) if l.split()[2] == "OK"]
print(len(ok), sum(1 for d in ok if d not in logged), len(logged))' "$T/seg.json" "$T/calls")
echo "crash campaign: $RUNS runs, $torn torn tails, $received signatures received, $entries sign entries, $missing missing"
check "clients received signatures during the campaign ($received)" test "$received" -gt 0
piped=$(cat "$T"/c/pipe*.calls | awk '$3 == "OK"' | wc -l)
check "pipelining clients received signatures too ($piped)" test "$piped" -gt 0
expect_eq "$missing" 0 "every signature a client received is in the log"
others=$(awk '$3 != "OK" && $3 !~ /^ERROR-/ && $3 != "CLOSED" && $3 != "UNAVAILABLE" { print $3 }' "$T/calls" | sort -u | tr '\n' ' ')
expect_eq "$others" "" "clients saw only signatures, closed connections and refusals while the agent went down"

# damage in the middle: one byte of the first record's entry flipped
first=$(ls "$T"/state/log/*.seg | head -1)
python3 - "$first" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[6] ^= 0xff
open(sys.argv[1], "wb").write(bytes(b))
PY
expect_exit 1 "the agent refuses to start on a log damaged in the middle" run_agent --config "$CONF"
check "the refusal names the file and the offset" grep -q "$(basename "$first"): corrupt audit log at offset 0" "$T/err"
finish
