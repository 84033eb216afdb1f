# A token that can go away or hang: `p11-kit server` in front of SoftHSM2,
# the agent on p11-kit-client.so (the shape of a network HSM). Source after
# common.sh and setup_test; then p11_setup, start_p11, and point the agent at
# it: MODULE=$CLIENT_MODULE before write_config, AGENT_ENV as set here.
# stop_p11 kills the server (the token is gone); kill -STOP -- "-$P11_PID"
# freezes it (every token call hangs) and kill -CONT thaws it.

p11_setup() {
        CLIENT_MODULE=
        for f in /usr/lib/*/pkcs11/p11-kit-client.so /usr/lib/pkcs11/p11-kit-client.so; do
                [ -e "$f" ] && CLIENT_MODULE=$f && break
        done
        [ -n "$CLIENT_MODULE" ] || { echo "FAIL: p11-kit-client.so not found (Debian package p11-kit-modules)" >&2; exit 1; }
        mkdir -p "$T/p11"
        chown "$AGENT_UID:$AGENT_GID" "$T/p11"
        P11SOCK=$T/p11/server.sock
        P11_PID=
        SOFTHSM_MODULE=$MODULE
        AGENT_ENV="P11_KIT_SERVER_ADDRESS=unix:path=$P11SOCK"
        trap 'kill -CONT -- "-$P11_PID" 2>/dev/null; stop_p11; cleanup' EXIT
}

# The server runs as the agent's user in its own process group: it forks a
# child per connection, and "the token goes away" means all of them.
start_p11() {
        rm -f "$P11SOCK"
        setpriv --reuid="$AGENT_UID" --regid="$AGENT_GID" --clear-groups env SOFTHSM2_CONF="$SOFTHSM2_CONF" \
                setsid p11-kit server -f -n "$P11SOCK" --provider "$SOFTHSM_MODULE" "pkcs11:token=provsign" \
                >>"$T/p11.log" 2>&1 </dev/null &
        P11_PID=$!
        wait_for 30 test -S "$P11SOCK" && return 0
        echo "p11-kit server did not start: $(cat "$T/p11.log")" >&2
        exit 1
}

stop_p11() {
        [ -n "$P11_PID" ] || return 0
        kill -KILL -- "-$P11_PID" 2>/dev/null
        wait "$P11_PID" 2>/dev/null
}

# p11_agent [config lines...]: the server started, the agent's config
# written for p11-kit-client.so (write_config with these [agent] lines) and
# the agent started on it.
p11_agent() {
        start_p11
        MODULE=$CLIENT_MODULE
        write_config "$@"
        start_agent
}
