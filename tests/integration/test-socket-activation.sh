#!/bin/bash
# The agent started by systemd socket activation (systemd-socket-activate,
# the real tool): it takes the passed socket (sd_listen_fds) instead of
# creating its own, and signs through it.
. "$SRCDIR/tests/lib/common.sh"
setup_test
# The config names a different path: the agent must not create it.
write_config
sed -i "s|^socket = .*|socket = $T/run/unused.sock|" "$CONF"

agent_argv
# systemd-socket-activate cannot set the socket's mode or group (a .socket
# unit would: SocketMode=0660, SocketGroup=): the test sets them once it exists.
systemd-socket-activate -l "$SOCK" "${AGENT_ARGV[@]}" --config "$CONF" 2>>"$T/agent.log" &
AGENT_PID=$!
check "systemd-socket-activate listens" wait_for 60 test -S "$SOCK"
chgrp "$CLIENTS_GID" "$SOCK"
chmod 0660 "$SOCK"

d=$(random_digest)
# The first connection starts the agent (it logs in and may generate keys).
expect_exit 0 "first connection starts the agent; status" cli "$RUNNER_UID" status
check "agent reports ready" grep -q ' ready: ' "$T/agent.log"
expect_exit 0 "pubkey through the activated socket" cli "$RUNNER_UID" key pubkey --principal ci-release
cp "$T/out" "$T/pub.pem"
expect_exit 0 "sign through the activated socket" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d"
check "openssl verifies it" verify_sig "$T/pub.pem" "$d" "$(cat "$T/out")"
check "the config's own socket was not created" test ! -e "$T/run/unused.sock"
stop_agent
finish
