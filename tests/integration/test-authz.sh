#!/bin/bash
# Who may do what: wrong uid, unknown principal, ambiguous principal, socket
# permissions, roles. Every refusal has its status name first on stderr.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent
d=$(random_digest)

# the socket: 0660, group socket_group
expect_eq "$(stat -c '%a %g' "$SOCK")" "660 $CLIENTS_GID" "socket is 0660 with group socket_group"

expect_exit 3 "runner2 signs for ci-release" cli "$RUNNER2_UID" sign --principal ci-release --digest "sha256:$d"
expect_stderr_prefix "PERMISSION_DENIED" "wrong uid: PERMISSION_DENIED"
expect_exit 3 "stranger signs" cli "$STRANGER_UID" sign --principal ci-release --digest "sha256:$d"
expect_stderr_prefix "PERMISSION_DENIED" "stranger: PERMISSION_DENIED"
expect_exit 3 "stranger omits the principal" cli "$STRANGER_UID" sign --digest "sha256:$d"
expect_stderr_prefix "PERMISSION_DENIED" "stranger without principal: PERMISSION_DENIED"
expect_exit 3 "unknown principal" cli "$RUNNER_UID" sign --principal no-such --digest "sha256:$d"
expect_stderr_prefix "NOT_FOUND" "unknown principal: NOT_FOUND"
expect_exit 3 "two-principal caller omits the principal" cli "$RUNNER_UID" sign --digest "sha256:$d"
expect_stderr_prefix "INVALID_ARGUMENT" "ambiguous principal: INVALID_ARGUMENT"
expect_exit 0 "two-principal caller names one" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d"

# a uid not in the socket group cannot even connect
expect_exit 4 "outsider cannot connect" cli "$OUTSIDER_UID" status
check "unreachable names the socket" grep -q "$SOCK" "$T/err"
# nor can anyone when no agent listens
expect_exit 4 "no agent at the path" as "$RUNNER_UID" "$PROVSIGN_CLI" --socket "$T/run/nope.sock" status

# roles: ListKeys is the operator's
expect_exit 0 "operator lists keys" cli "$OPERATOR_UID" key list --json
check "key list json has three active keys with keyid, principal, generation, algorithm, state, created" \
        python3 -c '
import json,sys
k=json.load(open(sys.argv[1]))
assert len(k)==3, k
for e in k:
    assert set(["keyid","principal","generation","algorithm","state","created"]) <= set(e), e
    assert e["state"]=="active" and e["generation"]==1, e
assert sorted(e["principal"] for e in k)==["ci-nightly","ci-release","ci-rsa"], k
' "$T/out"
expect_exit 0 "operator lists one principal" cli "$OPERATOR_UID" key list --principal ci-rsa --json
check "filtered list has one rsa-3072 key" python3 -c '
import json,sys
k=json.load(open(sys.argv[1])); assert len(k)==1 and k[0]["algorithm"]=="rsa-3072", k' "$T/out"
for u in "$RUNNER_UID" "$AUDITOR_UID" "$STRANGER_UID"; do
        expect_exit 3 "uid $u lists keys" cli "$u" key list
        expect_stderr_prefix "PERMISSION_DENIED" "key list by uid $u: PERMISSION_DENIED"
done

# malformed input is caught by the CLI (usage, exit 2) before any request
expect_exit 2 "malformed digest" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:xyz"
expect_exit 2 "unknown verb" cli "$RUNNER_UID" frobnicate
check "agent still alive" agent_alive
stop_agent
check "refusals were logged with uid and status" grep -q "refused Sign from uid $RUNNER2_UID.*PERMISSION_DENIED" "$T/agent.log"
finish
