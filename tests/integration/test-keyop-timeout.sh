#!/bin/bash
# A key operation that the token's hang cancels before it ran is never
# reported as done (docs/hardening.md). The token hangs (p11-kit server
# frozen), two Signs occupy both workers, a revoke queues behind them and is
# answered HSM_UNAVAILABLE at hsm_timeout. After the thaw the key must still
# be active, the log must hold no KEY_REVOKE, and the agent must not say
# "revoked" anywhere; then the same revoke, asked again, works.
. "$SRCDIR/tests/lib/common.sh"
. "$SRCDIR/tests/lib/p11server.sh"
setup_test
p11_setup
start_p11
MODULE=$CLIENT_MODULE
write_config "hsm_timeout = 2s" "workers = 2"
start_agent

expect_exit 0 "key list" cli "$OPERATOR_UID" key list --principal ci-nightly --json
# keys_json FILE: "KEYID STATE" lines from in `key list --json` output (one object a line, or an array)
keys_json() { python3 -c 'import json,sys; t=open(sys.argv[1]).read().strip(); d=json.loads(t) if t.startswith("[") else [json.loads(l) for l in t.splitlines() if l.strip()]; [print(k["keyid"], k["state"]) for k in d]' "$1"; }
KEY=$(keys_json "$T/out" | awk '$2 == "active" { print $1; exit }')
[ -n "$KEY" ] || { echo "FAIL: no active key of ci-nightly" >&2; exit 1; }

SIGNERS=()
kill -STOP -- "-$P11_PID"
for i in 1 2; do
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" >"$T/sign$i.out" 2>"$T/sign$i.err" &
        SIGNERS+=($!)
done
# Both Signs are on the workers (each worker holds one, stuck in the token).
check "both workers are busy (provsign_workers_busy 2)" wait_for 60 metric_is provsign_workers_busy 2
check "... and nothing waits for them yet" metric_is provsign_workers_queued 0
cli "$OPERATOR_UID" key revoke --key "$KEY" --reason "test" >"$T/revoke.out" 2>"$T/revoke.err" &
REVOKER=$!
# The revoke waits behind them; after hsm_timeout it is answered, but its
# cancelled job stays queued until a worker is free (the thaw below).
check "the revoke is queued behind them (provsign_workers_queued 1)" wait_for 60 metric_is provsign_workers_queued 1
wait "$REVOKER"
expect_eq "$?" 3 "revoke while both workers hang on the token: refused (exit 3)"
cp "$T/revoke.err" "$T/err"
expect_stderr_prefix "HSM_UNAVAILABLE" "the revoke says HSM_UNAVAILABLE"
check "the cancelled revoke is still queued while the token hangs" metric_is provsign_workers_queued 1
kill -CONT -- "-$P11_PID"
# The cancelled revoke comes back from the pool once a worker is free.
check "the agent reports that the revoke did not run" wait_for 30 grep -q "RevokeKey for ci-nightly failed: RevokeKey did not run" "$T/agent.log"
check "the agent never says the key was revoked" bash -c "! grep -q 'revoked:' '$T/agent.log'"
expect_exit 0 "key list after the thaw" cli "$OPERATOR_UID" key list --principal ci-nightly --json
expect_eq "$(keys_json "$T/out" | awk -v k="$KEY" '$1 == k { print $2 }')" active "the key is still active"
expect_exit 0 "audit export" cli "$AUDITOR_UID" audit export
check "the log holds no KEY_REVOKE" bash -c "! grep -q KEY_REVOKE '$T/out'"
expect_exit 0 "the same revoke, asked again, works" cli "$OPERATOR_UID" key revoke --key "$KEY" --reason "test"
check "and now the agent says revoked" wait_for 30 grep -q "revoked: test" "$T/agent.log"
wait "${SIGNERS[@]}"
pool_idle() { metric_is provsign_workers_busy 0 && metric_is provsign_workers_queued 0; }
check "after the thaw no worker is busy and nothing is queued" wait_for 60 pool_idle
stop_agent
finish
