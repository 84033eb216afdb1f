#!/bin/bash
# The agent refuses to start on a bad config, module, token or PIN with one
# line naming the problem (FILE:LINE where a line is involved) and exit 1.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config

# expect_start_fails "description" EXPECTED-LINE: runs the agent on $CONF.
expect_start_fails() {
        run_agent --config "$CONF" >"$T/out" 2>"$T/err"
        local rc=$?
        expect_eq "$rc" 1 "$1: exit 1"
        expect_eq "$(grep -v '^<' "$T/err")" "$2" "$1: message"
}

good=$(cat "$CONF")

sed -i 's/^socket_group = /socket_groupp = /' "$CONF"
expect_start_fails "unknown key" "$CONF:3: unknown key \"socket_groupp\" in [agent]"

printf '%s\n' "$good" > "$CONF"
printf '\n[principal ci-release]\nuids = 1\n' >> "$CONF"
expect_start_fails "duplicate section" "$CONF:$(wc -l < "$CONF" | awk '{print $1-1}'): duplicate section [principal ci-release]"

printf '%s\n' "$good" | sed 's/^uids = '"$RUNNER2_UID"'$/uids = no-such-user-xyz/' > "$CONF"
line=$(grep -n 'no-such-user-xyz' "$CONF" | cut -d: -f1)
expect_start_fails "unknown user" "$CONF:$line: unknown user \"no-such-user-xyz\""

printf '%s\n' "$good" | sed "s|^pkcs11_module = .*|pkcs11_module = /nonexistent/module.so|" > "$CONF"
expect_start_fails "missing module" "$CONF: PKCS#11 module /nonexistent/module.so: No such file or directory"

printf '%s\n' "$good" | sed "s|^token_label = .*|token_label = not-there|" > "$CONF"
expect_start_fails "token not there" "$CONF: no token labelled \"not-there\" in $(realpath $MODULE)"

printf '%s\n' "$good" > "$CONF"
cp "$T/tok/pin" "$T/goodpin"
echo 0000 > "$T/tok/pin"
expect_start_fails "wrong PIN" "$CONF: wrong PIN for token \"provsign\""
cp "$T/goodpin" "$T/tok/pin"

printf '%s\n' "$good" | sed "s|^pin_file = .*|pin_file = $T/nope|" > "$CONF"
expect_start_fails "missing PIN file" "$CONF: cannot read PIN file $T/nope: No such file or directory"

printf '%s\n' "$good" | sed "/^pin_file = /d" > "$CONF"
expect_start_fails "no PIN source at all" \
        "$CONF: no pin_file set and \$CREDENTIALS_DIRECTORY is unset (LoadCredential=pin:... in the unit)"

# the PIN from $CREDENTIALS_DIRECTORY/pin, as systemd's LoadCredential gives it
mkdir -p "$T/creds"
cp "$T/tok/pin" "$T/creds/pin"
chown -R "$AGENT_UID" "$T/creds"
agent_argv
"${AGENT_ARGV[@]:0:5}" CREDENTIALS_DIRECTORY="$T/creds" "${AGENT_ARGV[@]:5}" --config "$CONF" 2>>"$T/agent.log" &
AGENT_PID=$!
check "the agent with the credentials PIN is ready" wait_for 60 grep -q ' ready: ' "$T/agent.log"
expect_exit 0 "agent started with the PIN from \$CREDENTIALS_DIRECTORY" cli "$RUNNER_UID" status
stop_agent

# a live agent's socket is not stolen; a stale one is replaced (the second
# agent has a state_dir and key namespace of its own: on the same state_dir
# it would be refused before, test-state-lock)
printf '%s\n' "$good" > "$CONF"
start_agent
mkdir -p "$T/state2"
chown "$AGENT_UID:$AGENT_GID" "$T/state2"
sed -e "s|^state_dir = .*|state_dir = $T/state2|" -e "s|^\\[agent\\]$|[agent]\\nkey_namespace = second.test|" \
        "$CONF" >"$T/second.conf"
run_agent --config "$T/second.conf" >"$T/out" 2>"$T/err"
expect_eq "$?" 1 "second agent on the same socket: exit 1"
check "second agent says another agent is listening" grep -q "another agent is listening on $SOCK" "$T/err"
expect_exit 0 "first agent still serves" cli "$RUNNER_UID" status
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
AGENT_PID=
check "a killed agent leaves its socket file" test -S "$SOCK"
start_agent
expect_exit 0 "restarted agent replaced the stale socket" cli "$RUNNER_UID" status
stop_agent
check "the socket file is removed on a clean stop" test ! -e "$SOCK"
finish
