# Agents of a fleet in one test (test-fleet, test-trust): each NAME has its
# own config, state dir, socket and log origin ci-NAME.fleet.test/provsign,
# all on the token at $MODULE (the p11-kit server's client module). Source
# after common.sh and setup_test.

declare -A PID
# fleet_config NAME [lines...]: NAME's config, its own socket, state and origin
fleet_config() {
        local n=$1
        shift
        mkdir -p "$T/$n/run" "$T/$n/state"
        chown "$AGENT_UID:$AGENT_GID" "$T/$n/run" "$T/$n/state"
        chmod 0755 "$T/$n" "$T/$n/run"
        cat >"$T/$n/agent.conf" <<CONF
[agent]
socket = $T/$n/run/agent.sock
socket_group = $CLIENTS_GID
state_dir = $T/$n/state
pkcs11_module = $MODULE
token_label = provsign
pin_file = $T/tok/pin
read_timeout = 2s
log_origin = ci-$n.fleet.test/provsign
$(for l in "$@"; do echo "$l"; done)

[principal ci-release]
uids = $RUNNER_UID

[principal ci-nightly]
uids = $RUNNER2_UID

[role operator]
uids = $OPERATOR_UID

[role auditor]
uids = $AUDITOR_UID
CONF
}
# start_fleet NAME: in the background; returns once it logged "ready".
start_fleet() {
        local n=$1
        local before
        before=$(count_lines ' ready: ' "$T/$n/agent.log")
        agent_argv
        "${AGENT_ARGV[@]}" --config "$T/$n/agent.conf" 2>>"$T/$n/agent.log" &
        PID[$n]=$!
        wait_for 60 eval '[ "$(count_lines " ready: " "$T/$n/agent.log")" -gt "$before" ]' && return 0
        echo "agent $n did not come up; its log:" >&2
        cat "$T/$n/agent.log" >&2
        exit 1
}
stop_fleet() {
        kill -TERM "${PID[$1]}"
        wait "${PID[$1]}"
        local rc=$?
        PID[$1]=
        [ "$rc" = 0 ] || fail "agent $1 exited $rc on SIGTERM; log: $(tail -5 "$T/$1/agent.log")"
}
on_cleanup 'for n in "${!PID[@]}"; do [ -n "${PID[$n]}" ] && kill -TERM "${PID[$n]}" 2>/dev/null && wait "${PID[$n]}"; done'
# acli NAME UID ARGS...: the CLI against agent NAME
acli() {
        local n=$1
        shift
        SOCK=$T/$n/run/agent.sock cli "$@"
}

