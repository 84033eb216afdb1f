#!/bin/bash
# Group changes reach open connections (docs/hardening.md, "Groups"). A user signs for
# a principal through its supplementary group on one long-lived connection;
# the user leaves the group and the agent reloads: the same connection is
# refused from its next request on (and a new one too). Back in the group
# and reloaded: the same connection signs again. The agent looks groups up
# off its event loop; a connection waits for its look-up, so the request
# right after the reload is already judged with the new groups.
. "$SRCDIR/tests/lib/common.sh"
setup_test
G=provsign-it-g19 GID=64940 U=provsign-it-u19 UID_=64941
add_test_group "$G" "$GID"
add_test_user "$U" "$UID_" -g users -G "$G"
write_config
cat >> "$CONF" <<CONF

[principal ci-grp]
gids = $GID
CONF
start_agent

reloads_over() { [ "$(count_lines "config reloaded" "$T/agent.log")" -gt "$1" ]; }
hup() {
        local before
        before=$(count_lines "config reloaded" "$T/agent.log")
        kill -HUP "$AGENT_PID"
        wait_for 10 reloads_over "$before"
}
mkdir -p "$T/p" && chmod 0777 "$T/p"
# One connection for the whole test, driven through a FIFO: each line is a
# principal to sign for; each answer is a line with the status.
mkfifo "$T/p/cmd"
chmod 0666 "$T/p/cmd"
as "$UID_" env PYTHONPATH="$SRCDIR/tests/lib" python3 -u -c '
import os, sys
from rawclient import *
s = connect(sys.argv[1])
out = open(sys.argv[3], "a", buffering=1)
for line in open(sys.argv[2]):
    s.sendall(frame(sign_request(line.strip(), os.urandom(32))))
    st, msg, _ = read_response(s)
    out.write("%s %s\n" % (st, msg))
' "$SOCK" "$T/p/cmd" "$T/p/answers" &
CLIENT=$!
exec 7>"$T/p/cmd"
: > "$T/p/answers"
answered() { [ "$(wc -l < "$T/p/answers")" -ge "$1" ]; }
# ask PRINCIPAL: prints the status of one Sign on that connection (runs in
# a subshell: the answer's line number comes from the file, not a counter)
ask() {
        local n
        n=$(($(wc -l < "$T/p/answers") + 1))
        echo "$1" >&7
        wait_for 10 answered "$n"
        sed -n "${n}p" "$T/p/answers" | cut -d' ' -f1
}
expect_eq "$(ask ci-grp)" OK "a member of the principal's group signs on its connection"
gpasswd -d "$U" "$G" >/dev/null
check "reload after the user left the group" hup
expect_eq "$(ask ci-grp)" PERMISSION_DENIED "the same connection is refused once the user left the group"
expect_exit 3 "a new connection is refused too" as "$UID_" "$PROVSIGN_CLI" sign --principal ci-grp --digest "sha256:$(random_digest)"
gpasswd -a "$U" "$G" >/dev/null
check "reload after the user is back" hup
expect_eq "$(ask ci-grp)" OK "the same connection signs again"
exec 7>&-
wait "$CLIENT"
check "agent alive" agent_alive
stop_agent
finish
