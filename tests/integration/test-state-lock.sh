#!/bin/bash
# One agent per state_dir (docs/operations.md "One agent per state_dir"):
# a second agent on the state_dir of a running one, with the same config or
# another (its own socket), refuses to start with exit 1 naming the
# state_dir and the running agent's pid, before it touches the state_dir,
# the token or the socket. The first agent keeps signing, its exported log
# verifies and holds its own entries only, and once it is stopped an agent
# starts on that state_dir again.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent
FIRST=$AGENT_PID

expect_exit 0 "audit log-key" cli "$STRANGER_UID" audit log-key
sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$T/out" >"$T/logkey.pem"
signed=0
sign() { # DESCRIPTION
        expect_exit 0 "$1" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" &&
                signed=$((signed + 1))
}
for i in 1 2 3; do sign "the first agent signs ($i)"; done

# the same config (the same socket, too)
run_agent --config "$CONF" >"$T/out2" 2>"$T/err2"
expect_eq "$?" 1 "a second agent on the same config exits 1"
want="$CONF: state_dir $T/state is in use by another provsign-agent (pid $FIRST): one agent per state_dir"
check "... naming the state_dir and the first agent's pid" grep -qF "$want" "$T/err2"
check "... and nothing else (no ready line)" bash -c "! grep -q ' ready: ' '$T/err2'"

# another config: its own socket, the same state_dir
sed "s|^socket = .*|socket = $T/run/other.sock|" "$CONF" >"$T/other.conf"
run_agent --config "$T/other.conf" >"$T/out3" 2>"$T/err3"
expect_eq "$?" 1 "a second agent with its own socket on the same state_dir exits 1"
check "... naming the state_dir and the first agent's pid" grep -qF \
        "$T/other.conf: state_dir $T/state is in use by another provsign-agent (pid $FIRST)" "$T/err3"
check "... without making its socket" test ! -e "$T/run/other.sock"

check "the first agent is still running" agent_alive
for i in 4 5 6; do sign "the first agent still signs ($i)"; done

expect_exit 0 "audit export" cli "$AUDITOR_UID" audit export
cp "$T/out" "$T/export.jsonl"
expect_exit 0 "the exported log verifies" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/export.jsonl"
expect_eq "$(jq -r 'select(.event == "SIGN") | .status' "$T/export.jsonl" | grep -c '^OK$')" "$signed" \
        "the log holds exactly the first agent's $signed signatures"
expect_eq "$(jq -r 'select(.event == "AGENT_START") | .event' "$T/export.jsonl" | wc -l)" 1 \
        "the log holds one agent start (the refused agents wrote nothing)"

stop_agent
start_agent
pass "once the first agent stopped, an agent starts on its state_dir"
sign "... and signs"
stop_agent
finish
