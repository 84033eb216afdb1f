# Shared by the integration tests: a real SoftHSM2 token in a temp dir, a
# real provsign-agent under its own uid (setpriv), clients under other uids.
# Source it; then call setup_test. Needs root (CI runs as root) for setpriv.
#
# Environment from meson: PROVSIGN_AGENT, PROVSIGN_CLI, SRCDIR.

set -uo pipefail

AGENT_UID=${AGENT_UID:-64900}
AGENT_GID=${AGENT_GID:-64900}
CLIENTS_GID=64901     # socket_group: may connect, nothing more
RUNNER_UID=64911      # signer of principal ci-release
RUNNER2_UID=64912     # signer of ci-nightly
MULTI_UID=64913       # signer of both ci-release and ci-nightly
OPERATOR_UID=64914
AUDITOR_UID=64915
STRANGER_UID=64916    # in the socket group, in no principal or role
OUTSIDER_UID=64917    # not even in the socket group

MODULE=/usr/lib/softhsm/libsofthsm2.so
FAILURES=0
CHECKS=0
AGENT_PID=
AGENT_PREFIX=()

fail() {
        echo "FAIL: $*" >&2
        FAILURES=$((FAILURES + 1))
}

pass() {
        CHECKS=$((CHECKS + 1))
        echo "ok: $*"
}

# check "description" command...: the command must succeed.
check() {
        local what=$1
        shift
        if "$@"; then pass "$what"; else fail "$what"; fi
}

# expect_exit CODE "description" command...: exact exit status.
expect_exit() {
        local want=$1 what=$2
        shift 2
        "$@" >"$T/out" 2>"$T/err"
        local got=$?
        if [ "$got" = "$want" ]; then
                pass "$what (exit $got)"
        else
                fail "$what: exit $got, wanted $want; stderr: $(head -c 400 "$T/err")"
        fi
}

# expect_stderr_prefix PREFIX "description": the last command's stderr starts with PREFIX.
expect_stderr_prefix() {
        local prefix=$1 what=$2
        if [[ "$(cat "$T/err")" == "$prefix"* ]]; then
                pass "$what"
        else
                fail "$what: stderr was: $(head -c 400 "$T/err")"
        fi
}

expect_eq() {
        if [ "$1" = "$2" ]; then pass "$3"; else fail "$3: got '$1', wanted '$2'"; fi
}

require_root() {
        if [ "$(id -u)" != 0 ]; then
                echo "FAIL: integration tests start the agent under its own uid with setpriv and need root" >&2
                exit 1
        fi
}

# wait_for SECONDS command...: run the command every 0.1 s until it
# succeeds (return 0) or SECONDS have passed (return 1). For waiting on the
# condition itself (a log line, a count, a socket) instead of a fixed sleep;
# the deadline is generous, the wait as short as the condition allows.
wait_for() {
        local deadline=$((SECONDS + $1))
        shift
        while :; do
                "$@" && return 0
                [ "$SECONDS" -lt "$deadline" ] || return 1
                sleep 0.1
        done
}

# count_lines PATTERN FILE...: lines of the files matching the ERE (0 when
# none or no file).
count_lines() {
        local pat=$1
        shift
        cat "$@" 2>/dev/null | grep -cE -- "$pat"
}

# on_cleanup 'shell words': run at exit, before the agent is stopped and
# the test directory removed (last registered, first run).
CLEANUP_HOOKS=()
on_cleanup() {
        CLEANUP_HOOKS=("$1" "${CLEANUP_HOOKS[@]}")
}

# add_test_group NAME GID / add_test_user NAME UID [useradd options...]:
# a host group or user for one test, created fresh (a leftover of a run that
# was killed with SIGKILL is removed first) and removed again by cleanup,
# however the test ends.
# useradd, groupadd, userdel and groupdel refuse to run while another holds
# /etc/passwd or /etc/group ("cannot lock ...; try again later"), and tests
# run in parallel: every change to the user database goes through this lock.
USERS_LOCK=/tmp/provsign-test-users.lock
users_locked() {
        flock -o "$USERS_LOCK" "$@"
}
add_test_group() {
        getent group "$1" >/dev/null && users_locked groupdel "$1"
        users_locked groupadd -g "$2" "$1" || { echo "FAIL: groupadd $1" >&2; exit 1; }
        on_cleanup "users_locked groupdel '$1' 2>/dev/null"
}
add_test_user() {
        local name=$1 uid=$2
        shift 2
        getent passwd "$name" >/dev/null && users_locked userdel "$name"
        users_locked useradd -u "$uid" -M -N -s /usr/sbin/nologin "$@" "$name" || { echo "FAIL: useradd $name" >&2; exit 1; }
        on_cleanup "users_locked userdel '$name' 2>/dev/null"
}

cleanup() {
        local h
        for h in "${CLEANUP_HOOKS[@]}"; do eval "$h"; done
        if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
                kill -TERM "$AGENT_PID" 2>/dev/null
                wait "$AGENT_PID" 2>/dev/null
        fi
        if [ "${KEEP_TESTDIR:-}" = "" ]; then rm -rf "$T"; fi
}

setup_test() {
        require_root
        T=$(mktemp -d /tmp/provsign-it-XXXXXX)
        chmod 0755 "$T"
        trap cleanup EXIT
        # killed (meson's timeout sends SIGTERM): exit, so cleanup runs
        trap 'exit 143' TERM
        trap 'exit 130' INT
        trap 'exit 129' HUP
        mkdir -p "$T/run" "$T/state"
        "$SRCDIR/tests/lib/make-token" "$T/tok" provsign
        export SOFTHSM2_CONF=$T/tok/softhsm2.conf
        chown -R "$AGENT_UID:$AGENT_GID" "$T/tok" "$T/run" "$T/state"
        chmod 0755 "$T/run"
        SOCK=$T/run/agent.sock
        CONF=$T/agent.conf
}

# write_config [extra [agent] lines...]: the standard test policy.
write_config() {
        {
                echo "[agent]"
                echo "socket = $SOCK"
                echo "socket_group = $CLIENTS_GID"
                echo "state_dir = $T/state"
                echo "pkcs11_module = $MODULE"
                echo "token_label = provsign"
                echo "pin_file = $T/tok/pin"
                echo "read_timeout = 2s"
                echo "log_origin = provsign.test/it"
                for l in "$@"; do echo "$l"; done
                echo
                echo "[principal ci-release]"
                echo "uids = $RUNNER_UID $MULTI_UID"
                echo
                echo "[principal ci-nightly]"
                echo "uids = $RUNNER2_UID"
                echo "gids = $((MULTI_UID))"
                echo "algorithm = ecdsa-p384"
                echo
                echo "[principal ci-rsa]"
                echo "uids = $RUNNER_UID"
                echo "algorithm = rsa-3072"
                echo
                echo "[role operator]"
                echo "uids = $OPERATOR_UID"
                echo
                echo "[role auditor]"
                echo "uids = $AUDITOR_UID"
        } > "$CONF"
}

# gen_audit_log ARGS...: tests/bench/gen-audit-log, which loads libp11 like
# the agent, with the same sanitizer options (tests/lsan.supp matches
# libp11's allocations only with full unwinding).
gen_audit_log() {
        env ${PROVSIGN_P11_ASAN_OPTIONS:+ASAN_OPTIONS=$PROVSIGN_P11_ASAN_OPTIONS} \
                ${PROVSIGN_P11_LSAN_OPTIONS:+LSAN_OPTIONS=$PROVSIGN_P11_LSAN_OPTIONS} \
                "$PROVSIGN_GEN_AUDIT_LOG" "$@"
}

# agent_argv: sets AGENT_ARGV to run the agent under its own uid (a member
# of the socket group, so it can hand the socket to that group).
agent_argv() {
        # AGENT_PREFIX: words before it all (test-audit-export: a private
        # mount namespace with a stand-in journald socket)
        AGENT_ARGV=("${AGENT_PREFIX[@]}" setpriv --reuid="$AGENT_UID" --regid="$AGENT_GID" --groups="$CLIENTS_GID"
                env SOFTHSM2_CONF="$SOFTHSM2_CONF")
        # The agent loads libp11: full unwinding so tests/lsan.supp matches.
        [ -n "${PROVSIGN_P11_ASAN_OPTIONS:-}" ] && AGENT_ARGV+=("ASAN_OPTIONS=$PROVSIGN_P11_ASAN_OPTIONS")
        [ -n "${PROVSIGN_P11_LSAN_OPTIONS:-}" ] && AGENT_ARGV+=("LSAN_OPTIONS=$PROVSIGN_P11_LSAN_OPTIONS")
        [ -n "${UBSAN_OPTIONS:-}" ] && AGENT_ARGV+=("UBSAN_OPTIONS=$UBSAN_OPTIONS")
        # AGENT_ENV: extra VAR=value words for the agent (test-outage: the p11-kit server address).
        [ -n "${AGENT_ENV:-}" ] && AGENT_ARGV+=($AGENT_ENV)
        AGENT_ARGV+=("$PROVSIGN_AGENT")
}

# run_agent args...: the agent in the foreground (for start-up failures).
run_agent() {
        agent_argv
        "${AGENT_ARGV[@]}" "$@"
}

# start_agent: in the background; returns once the agent logged "ready".
start_agent() {
        agent_argv
        local before n
        before=$(grep -c ' ready: ' "$T/agent.log" 2>/dev/null)
        "${AGENT_ARGV[@]}" --config "$CONF" 2>>"$T/agent.log" &
        AGENT_PID=$!
        for _ in $(seq 1 600); do
                # (the log may not exist yet: the child opens it)
                n=$(grep -c ' ready: ' "$T/agent.log" 2>/dev/null)
                [ "${n:-0}" -gt "${before:-0}" ] && return 0
                kill -0 "$AGENT_PID" 2>/dev/null || break
                sleep 0.1
        done
        echo "agent did not come up; its log:" >&2
        cat "$T/agent.log" >&2
        exit 1
}

agent_alive() {
        kill -0 "$AGENT_PID" 2>/dev/null
}

# stop_agent: SIGTERM, and the agent must exit 0.
stop_agent() {
        kill -TERM "$AGENT_PID"
        wait "$AGENT_PID"
        local rc=$?
        AGENT_PID=
        if [ "$rc" != 0 ]; then
                fail "agent exited $rc on SIGTERM; log: $(tail -20 "$T/agent.log")"
        fi
}

# as UID [GID...] command...: run as a client uid, member of the socket group
# unless the uid is OUTSIDER_UID.
as() {
        local uid=$1
        shift
        local groups=(--groups="$CLIENTS_GID")
        [ "$uid" = "$OUTSIDER_UID" ] && groups=(--clear-groups)
        setpriv --reuid="$uid" --regid="$uid" "${groups[@]}" env PROVSIGN_AGENT_SOCK="$SOCK" "$@"
}

cli() {
        local uid=$1
        shift
        as "$uid" "$PROVSIGN_CLI" "$@"
}

# notify_standin DIR: a stand-in service manager for the agent: a datagram
# socket DIR/notify (NOTIFY_SOCKET), every notification a line of DIR/log;
# stopped at cleanup. Sets NOTIFY_DIR.
notify_standin() {
        NOTIFY_DIR=$1
        mkdir -m 0755 "$NOTIFY_DIR"
        python3 - "$NOTIFY_DIR/notify" "$NOTIFY_DIR/log" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666)
out = open(sys.argv[2], "a", buffering=1); os.chmod(sys.argv[2], 0o644)
while True:
    for l in s.recv(4096).decode().split("\n"):
        if l: out.write(l + "\n")
PY
        NOTIFY_PID=$!
        on_cleanup 'kill "$NOTIFY_PID" 2>/dev/null'
        check "the stand-in NOTIFY_SOCKET is up" wait_for 30 test -S "$NOTIFY_DIR/notify"
}

# hostile CODE: runs the Python CODE as RUNNER_UID with tests/lib/rawclient's
# names imported (and os, struct, time) and path set to the agent's socket.
hostile() {
        as "$RUNNER_UID" env PYTHONPATH="$SRCDIR/tests/lib" SOCK="$SOCK" python3 -c "
import os, struct, time
from rawclient import *
path = os.environ['SOCK']
$1"
}

hex_to_file() {
        # shellcheck disable=SC2059
        printf "$(printf '%s' "$1" | sed 's/../\\x&/g')" > "$2"
}

random_digest() {
        od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

# verify_sig PEM DIGEST_HEX SIG_B64 [pkeyutl opts]: openssl, not our code.
verify_sig() {
        local pem=$1 hex=$2 b64=$3
        shift 3
        local d
        d=$(mktemp -d "$T/v-XXXXXX")
        hex_to_file "$hex" "$d/digest"
        printf '%s' "$b64" | base64 -d > "$d/sig"
        openssl pkeyutl -verify -pubin -inkey "$pem" -in "$d/digest" -sigfile "$d/sig" "$@" >/dev/null 2>&1
}

# metric_is NAME VALUE: the agent's metrics (`provsign metrics`, asked by a
# caller in no role) hold the sample "NAME VALUE" (an unlabelled gauge). To
# wait on the agent's state: wait_for 60 metric_is provsign_workers_busy 2
metric_is() {
        local text
        text=$(cli "$STRANGER_UID" metrics --format prometheus 2>/dev/null) || return 1
        grep -qxF -- "$1 $2" <<<"$text"
}

# agent_segments: the log segment files the agent has open, one a line.
agent_segments() {
        local f
        for f in /proc/"$AGENT_PID"/fd/*; do readlink "$f"; done | grep '\.seg$' | sort -u
}

# agent_traced TRACER: every thread of the agent has TRACER (0: none) as its tracer.
agent_traced() {
        local s
        for s in /proc/"$AGENT_PID"/task/*/status; do
                [ "$(awk '/^TracerPid:/ {print $2}' "$s")" = "$1" ] || return 1
        done
}

# strace_agent STRACE_ARGS...: strace -f -qq -p AGENT_PID STRACE_ARGS... in
# the background (STRACE_PID, output in $T/strace.out, killed by cleanup),
# then waits until every thread of the agent is traced (a check). A check
# that cannot run is a SKIP (exit 77): no strace, or it cannot attach (a
# container without CAP_SYS_PTRACE). Fault injection on one file: -P PATH
# -e inject=SYSCALL:error=ERRNO (test-fdatasync, test-status-degraded).
# strace_detach: kills it and waits until no thread is traced (a check).
strace_agent() {
        command -v strace >/dev/null || { echo "SKIP: strace is not installed (tests/lib/deps.sh)" >&2; exit 77; }
        strace -f -qq -p "$AGENT_PID" "$@" -o "$T/strace.out" 2> "$T/strace.err" &
        STRACE_PID=$!
        on_cleanup 'kill "$STRACE_PID" 2>/dev/null; wait "$STRACE_PID" 2>/dev/null'
        strace_attached_or_gone() { agent_traced "$STRACE_PID" || ! kill -0 "$STRACE_PID" 2>/dev/null; }
        wait_for 60 strace_attached_or_gone
        if ! kill -0 "$STRACE_PID" 2>/dev/null; then
                echo "SKIP: strace could not attach to the agent: $(head -c 400 "$T/strace.err")" >&2
                exit 77
        fi
        check "strace is attached to every thread of the agent" agent_traced "$STRACE_PID"
}
strace_detach() {
        kill "$STRACE_PID"
        wait "$STRACE_PID"
        check "strace detached" wait_for 60 agent_traced 0
}

finish() {
        echo "$CHECKS checks passed, $FAILURES failed"
        [ "$FAILURES" = 0 ]
}
