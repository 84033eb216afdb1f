#!/bin/bash
# Hardening of the running agent: every descriptor it holds is close-on-exec
# (read from /proc/PID/fdinfo), one it inherited included; it refuses a group- or world-writable state
# dir, log dir or log segment with a clear message; SIGTERM under a 16-client
# load finishes what is in flight: the agent exits 0, its log ends with the
# stop entry, and every Sign entry in the log is a signature some client
# received (and every signature received is in the log).
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
SEGREAD="python3 $SRCDIR/tests/lib/segread.py"

# an inherited descriptor above 2 (not close-on-exec here): the agent
# must make it close-on-exec too
exec 9<"$CONF"
start_agent
exec 9<&-
check "the agent inherited descriptor 9 ($CONF)" test "$(readlink /proc/"$AGENT_PID"/fd/9)" = "$CONF"
d=$(random_digest)
expect_exit 0 "sign" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d"
echo "$d" > "$T/first-digest"
# a client connection open too, so its fd is among those checked: it has
# had a reply (the agent holds it) before the descriptors are read, and
# stays open until they have been
mkdir -m 0777 "$T/m"
as "$RUNNER_UID" env PYTHONPATH="$SRCDIR/tests/lib" python3 -c '
import os, sys, time
from rawclient import *
s = connect(sys.argv[1])
s.sendall(frame(status_request()))
assert read_response(s)[0] == "OK"
open(sys.argv[2], "w").close()
while not os.path.exists(sys.argv[3]): time.sleep(0.05)' "$SOCK" "$T/m/conn.open" "$T/m/conn.done" &
HOLDER=$!
check "a client connection is open" wait_for 30 test -e "$T/m/conn.open"
n=0
notcloexec=
for f in /proc/"$AGENT_PID"/fdinfo/*; do
        fd=${f##*/}
        [ "$fd" -le 2 ] && continue
        # (a descriptor a thread closed since the listing is not held: skipped)
        flags=$(awk '/^flags:/ { print $2 }' "$f" 2>/dev/null)
        [ -n "$flags" ] || continue
        n=$((n + 1))
        # O_CLOEXEC is 02000000 (octal) in the fdinfo flags
        (( (8#$flags & 8#2000000) != 0 )) || notcloexec+="$fd($(readlink /proc/"$AGENT_PID"/fd/"$fd")) "
done
check "the agent holds descriptors beyond stdio ($n)" test "$n" -ge 5
expect_eq "$notcloexec" "" "every descriptor of the agent is close-on-exec"
touch "$T/m/conn.done"
wait "$HOLDER"
stop_agent

# modes checked at start
chmod 0777 "$T/state"
expect_exit 1 "a world-writable state_dir is refused" run_agent --config "$CONF"
check "the message says why" grep -q "state_dir $T/state is group- or world-writable (mode 0777)" "$T/err"
chmod 0700 "$T/state"
chmod 0770 "$T/state/log"
expect_exit 1 "a group-writable log directory is refused" run_agent --config "$CONF"
check "the message names it" grep -q "$T/state/log is group- or world-writable" "$T/err"
chmod 0700 "$T/state/log"
seg=$(ls "$T"/state/log/*.seg | head -1)
chmod 0622 "$seg"
expect_exit 1 "a group-writable log segment is refused" run_agent --config "$CONF"
check "the message names the file" grep -q "$seg is group- or world-writable" "$T/err"
chmod 0600 "$seg"

# SIGTERM under load finishes what is in flight
start_agent
mkdir -p "$T/c"
chmod 0777 "$T/c"
for c in $(seq 1 16); do
        as "$RUNNER_UID" python3 "$SRCDIR/tests/lib/signprobe.py" "$SOCK" ci-release "$T/stop" "$T/c/$c.calls" &
done
# SIGTERM once every client is signing
all_signing() {
        local f n=0
        for f in "$T"/c/*.calls; do
                [ -e "$f" ] && [ "$(count_lines ' OK ' "$f")" -ge 4 ] && n=$((n + 1))
        done
        [ "$n" = 16 ]
}
check "all 16 clients have signed 4 times each" wait_for 120 all_signing
stop_agent
touch "$T/stop"
for j in $(jobs -p); do wait "$j"; done
cat "$T"/c/*.calls > "$T/calls"
$SEGREAD "$T/state/log" > "$T/seg.json"
expect_eq "$?" 0 "the log reads back after SIGTERM"
read -r received logged missing unreturned last < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
logged = set(s["sign_digests"])
ok = set(l.split()[3] for l in open(sys.argv[2]) if l.split()[2] == "OK")
ok.add(open(sys.argv[3]).read().strip())  # the CLI signature at the start
print(len(ok), len(logged), len(ok - logged), len(logged - ok), s["last_event"])' "$T/seg.json" "$T/calls" "$T/first-digest")
echo "SIGTERM under load: $received signatures received, $logged sign entries"
check "clients received signatures before SIGTERM ($received)" test "$received" -gt 0
expect_eq "$missing" 0 "every signature received is in the log"
expect_eq "$unreturned" 0 "every signature logged was returned (in-flight requests were finished)"
expect_eq "$last" 9 "the log ends with the AGENT_STOP entry"
finish
