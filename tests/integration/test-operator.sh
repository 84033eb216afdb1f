#!/bin/bash
# What an operator trips over: the log's origin is part of the log, the
# packaged config has no working placeholder, the agent refuses root, a
# backup of token + PIN + state restores into a fresh place and continues the
# same log, the "Without systemd" recipe of provsign-agent(8) runs as written,
# and the LICENSE matches debian/copyright.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config

# --- the licence -----------------------------------------------------------
check "LICENSE is at the top level" test -s "$SRCDIR/LICENSE"
check "LICENSE is the Apache License 2.0" grep -q '^ *Version 2.0, January 2004$' "$SRCDIR/LICENSE"
check "debian/copyright says Apache-2.0" grep -qx 'License: Apache-2.0' "$SRCDIR/packaging/debian/copyright"

# --- root ------------------------------------------------------------------
expect_exit 1 "the agent refuses to run as root" env SOFTHSM2_CONF="$SOFTHSM2_CONF" "$PROVSIGN_AGENT" --config "$CONF"
check "the refusal names --allow-root" grep -q 'refusing to run as root.*--allow-root' "$T/err"
check "and nothing was written to the state directory" test -z "$(ls -A "$T/state")"

# --- no placeholder --------------------------------------------------------
check "the packaged config sets no log_origin" bash -c "! grep -q '^log_origin' '$SRCDIR/packaging/agent.conf.example'"
grep -v '^log_origin' "$CONF" >"$T/noorigin.conf"
expect_exit 1 "an agent without log_origin refuses to start" run_agent --config "$T/noorigin.conf"
check "the refusal names the file and says what to set" \
        grep -q "^$T/noorigin.conf: log_origin is not set: add \"log_origin = " "$T/err"

# --- the origin is part of the log -----------------------------------------
start_agent
D=$(random_digest)
expect_exit 0 "a first signature" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$D"
check "the log records its origin" grep -qx 'provsign.test/it' "$T/state/log/origin"
# SIGHUP with another origin: warned, ignored
sed -i 's|^log_origin = .*|log_origin = renamed.test/it|' "$CONF"
kill -HUP "$AGENT_PID"
for _ in $(seq 1 100); do grep -q 'log_origin changed' "$T/agent.log" && break; sleep 0.1; done
check "a reload that changes log_origin warns that it is ignored" \
        grep -q 'log_origin changed to "renamed.test/it"; ignored: the log keeps "provsign.test/it"' "$T/agent.log"
cli "$STRANGER_UID" status --json >"$T/status.json"
expect_eq "$(jq -r .log_origin "$T/status.json")" "provsign.test/it" "the running log keeps its name after the reload"
stop_agent
expect_exit 1 "a restart with another log_origin is refused" run_agent --config "$CONF"
check "naming both origins and the file" \
        grep -q "log_origin \"renamed.test/it\" differs from \"provsign.test/it\", the origin of the log in $T/state/log" "$T/err"
sed -i 's|^log_origin = .*|log_origin = provsign.test/it|' "$CONF"
start_agent
expect_exit 0 "with the log's own origin it starts and signs" \
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"

# --- backup and restore ----------------------------------------------------
cli "$AUDITOR_UID" audit log-key >"$T/logkey.pem"
cli "$AUDITOR_UID" audit export >"$T/before.jsonl"
tail -1 "$T/before.jsonl" | jq -j .checkpoint >"$T/before.note"
before_size=$(sed -n 2p "$T/before.note")
stop_agent
# The backup: token directory, PIN file and state directory, together.
tar -C "$T" -cf "$T/backup.tar" tok state
# A fresh place: nothing of the old paths survives.
R=$T/restored
mkdir -p "$R/run"
tar -C "$R" -xf "$T/backup.tar"
sed -i "s|$T/tok/|$R/tok/|" "$R/tok/softhsm2.conf"
chown -R "$AGENT_UID:$AGENT_GID" "$R"
mv "$T/state" "$T/state.moved"
mv "$T/tok" "$T/tok.moved"
export SOFTHSM2_CONF=$R/tok/softhsm2.conf
SOCK=$R/run/agent.sock
sed -e "s|^socket = .*|socket = $SOCK|" -e "s|^state_dir = .*|state_dir = $R/state|" \
        -e "s|^pin_file = .*|pin_file = $R/tok/pin|" "$CONF" >"$R/agent.conf"
CONF=$R/agent.conf
start_agent
expect_exit 0 "the restored agent signs" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" --json
after_seq=$(jq -r .receipt.log_seq "$T/out")
check "signing continues the same log (seq $after_seq >= $before_size)" test "$after_seq" -ge "$before_size"
cli "$AUDITOR_UID" audit export --previous-size "$before_size" >"$T/after.jsonl"
expect_exit 0 "the restored log verifies" "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" "$T/after.jsonl"
expect_exit 0 "and extends the checkpoint taken before the backup" \
        "$PROVSIGN_CLI" audit verify --log-key "$T/logkey.pem" --previous "$T/before.note" "$T/after.jsonl"
cli "$AUDITOR_UID" audit log-key >"$T/logkey2.pem"
check "the log key is the same" cmp -s "$T/logkey.pem" "$T/logkey2.pem"
stop_agent
mv "$T/state.moved" "$T/state"
mv "$T/tok.moved" "$T/tok"
export SOFTHSM2_CONF=$T/tok/softhsm2.conf

# --- provsign-agent(8), "Without systemd", as written ------------------------
# Test names for the recipe's user and groups (removed by the trap, even when
# the test is killed); the paths under $T.
RU=pst-agent$$ RC=pst-clients$$ RG=pst-token$$
recipe_cleanup() {
        pkill -TERM -f -- "--config $T/etc/agent.conf" 2>/dev/null
        users_locked userdel "$RU" 2>/dev/null
        users_locked groupdel "$RU" 2>/dev/null
        users_locked groupdel "$RC" 2>/dev/null
        users_locked groupdel "$RG" 2>/dev/null
        cleanup
}
trap recipe_cleanup EXIT
users_locked groupadd "$RG"
chgrp -R "$RG" "$T/tok"
chmod -R g+rwX "$T/tok"
chmod 0755 "$T"
mkdir -p "$T/etc" "$T/bin"
cp "$T/tok/pin" "$T/etc/pin.source"
chmod 0600 "$T/etc/pin.source"
ln -s "$PROVSIGN_AGENT" "$T/bin/provsign-agent"
sed -n '/^\.\\" BEGIN RECIPE$/,/^\.\\" END RECIPE$/p' "$SRCDIR/packaging/man/provsign-agent.8" |
        grep -v '^\.' | sed -e 's/\\-/-/g' -e 's/\\e/\\/g' >"$T/recipe.sh"
check "the recipe is in provsign-agent(8)" grep -q 'setpriv' "$T/recipe.sh"
# Only the first two lines (the variables) change.
sed -i -e "1s|.*|AGENT_USER=$RU CLIENTS=$RC TOKEN_GROUP=$RG|" \
        -e "2s|.*|STATE=$T/recipe-state RUN=$T/recipe-run CONF=$T/etc|" "$T/recipe.sh"
cat >"$T/etc/agent.conf" <<CONF
[agent]
socket = $T/recipe-run/agent.sock
socket_group = $RC
state_dir = $T/recipe-state
pkcs11_module = $MODULE
token_label = provsign
pin_file = $T/etc/agent.pin
log_origin = provsign.test/it
# (a second agent on this test's token: a namespace of its own)
key_namespace = recipe

[principal ci-release]
uids = $RUNNER_UID
CONF
# (the recipe's useradd/groupadd under the tests' user-database lock; -o: the
# agent it starts in the background does not hold the lock)
PATH=$T/bin:$PATH users_locked bash -e "$T/recipe.sh" >"$T/recipe.out" 2>"$T/recipe.log"
rc=$?
expect_eq "$rc" 0 "the recipe runs as written"
for _ in $(seq 1 100); do grep -q ' ready: ' "$T/recipe.log" && break; sleep 0.1; done
check "the agent started by the recipe is ready" grep -q ' ready: ' "$T/recipe.log"
check "its socket is 0660, group $RC" test "$(stat -c '%a %G' "$T/recipe-run/agent.sock" 2>/dev/null)" = "660 $RC"
check "the agent runs as $RU" test "$(ps -o user= -p "$(pgrep -f -- "--config $T/etc/agent.conf" | head -1)")" = "$RU"
rcg=$(getent group "$RC" | cut -d: -f3)
setpriv --reuid="$RUNNER_UID" --regid="$RUNNER_UID" --groups="$rcg" \
        env PROVSIGN_AGENT_SOCK="$T/recipe-run/agent.sock" "$PROVSIGN_CLI" sign --principal ci-release \
        --digest "sha256:$(random_digest)" >"$T/out" 2>"$T/err"
expect_eq "$?" 0 "a runner in $RC signs through the recipe's agent"
pkill -TERM -f -- "--config $T/etc/agent.conf"
finish
