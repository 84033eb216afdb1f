#!/bin/bash
# Key lifecycle against a real agent and SoftHSM2 token: rotation while 8
# clients sign (no failed request; every signature checked by openssl
# against the key the signed bundle lists for its keyid), revocation
# (NO_ACTIVE_KEY, or the successor with auto_rotate_on_revoke), states that
# survive a restart, destroy (the private object is gone from the token,
# the public key stays in the bundle), operator-only commands, a tampered
# bundle, and scheduled rotation.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent

# bundle_check FILE: the envelope's signature verifies (openssl, over the
# DSSE PAE bytes) with the log key, and FILE.json gets the bundle JSON.
bundle_check() {
        /usr/bin/python3 - "$1" "$T/logkey.pem" "$1.json" <<'EOF'
import base64, json, subprocess, sys, tempfile, os
env = json.load(open(sys.argv[1]))
payload = base64.b64decode(env["payload"], validate=True)
t = env["payloadType"].encode()
pae = b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)
assert env["payloadType"] == "application/vnd.provsign.keybundle.v1+json", env["payloadType"]
assert len(env["signatures"]) == 1
sig = base64.b64decode(env["signatures"][0]["sig"], validate=True)
with tempfile.TemporaryDirectory() as d:
    open(os.path.join(d, "pae"), "wb").write(pae)
    open(os.path.join(d, "sig"), "wb").write(sig)
    r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", sys.argv[2], "-signature",
                        os.path.join(d, "sig"), os.path.join(d, "pae")], capture_output=True)
    if r.returncode != 0:
        sys.exit("bundle signature does not verify: " + r.stdout.decode() + r.stderr.decode())
open(sys.argv[3], "w").write(payload.decode())
EOF
}

# key_field BUNDLE_JSON KEYID FIELD: one field of one key in the bundle.
key_field() {
        /usr/bin/python3 -c '
import json, sys
b = json.load(open(sys.argv[1]))
k = [k for k in b["keys"] if k["keyid"] == sys.argv[2]]
print(k[0][sys.argv[3]] if k else "MISSING")' "$1" "$2" "$3"
}

# get_bundle NAME: fetch the key bundle (any caller) into $T/NAME and check it.
get_bundle() {
        as "$STRANGER_UID" /usr/bin/python3 "$SRCDIR/tests/lib/rawclient.py" bundle > "$T/$1" 2>"$T/err" ||
                { fail "GetKeyBundle: $(cat "$T/err")"; return 1; }
        bundle_check "$T/$1" || { fail "bundle $1 signature"; return 1; }
}

expect_exit 0 "log key" cli "$AUDITOR_UID" audit log-key
cp "$T/out" "$T/logkey.pem"
check "log key is a PEM public key" openssl pkey -pubin -in "$T/logkey.pem" -noout

expect_exit 0 "active key of ci-release" cli "$RUNNER_UID" key pubkey --principal ci-release --json
K1=$(jq -r .keyid "$T/out")

# ---- Only operators -------------------------------------------------------
for who in "$RUNNER_UID" "$AUDITOR_UID" "$STRANGER_UID"; do
        expect_exit 3 "uid $who may not rotate" cli "$who" key rotate --principal ci-release
        expect_stderr_prefix "PERMISSION_DENIED" "uid $who: rotate refused as PERMISSION_DENIED"
        expect_exit 3 "uid $who may not revoke" cli "$who" key revoke --key "$K1" --reason test
        expect_stderr_prefix "PERMISSION_DENIED" "uid $who: revoke refused as PERMISSION_DENIED"
        expect_exit 3 "uid $who may not destroy" cli "$who" key destroy --key "$K1"
        expect_stderr_prefix "PERMISSION_DENIED" "uid $who: destroy refused as PERMISSION_DENIED"
done
expect_exit 2 "revoke needs a reason" cli "$OPERATOR_UID" key revoke --key "$K1"
expect_exit 2 "revoke: bad time" cli "$OPERATOR_UID" key revoke --key "$K1" --reason x --compromised-since yesterday
expect_exit 3 "rotate an unknown principal" cli "$OPERATOR_UID" key rotate --principal nobody
expect_stderr_prefix "NOT_FOUND" "unknown principal: NOT_FOUND"
expect_exit 3 "destroy the active key" cli "$OPERATOR_UID" key destroy --key "$K1"
expect_stderr_prefix "INVALID_ARGUMENT" "destroying the active key is refused"

# ---- Rotate while 8 clients sign -------------------------------------------
N=${PROVSIGN_TEST_KEYS_N:-12}
mkdir -p "$T/c" && chmod 0777 "$T/c"
for c in $(seq 1 8); do
        (
                # at least N each, and on until the rotations are over
                i=0
                while [ "$i" -lt "$N" ] || [ ! -e "$T/c/stop" ]; do
                        i=$((i + 1))
                        d=$(random_digest)
                        if out=$(cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" --json 2>>"$T/c/$c.err"); then
                                echo "$d $(jq -r '.keyid + " " + .sig' <<<"$out")" >> "$T/c/$c.ok"
                        else
                                echo "$d" >> "$T/c/$c.fail"
                        fi
                done
        ) &
        CLIENTS+=($!)
done
# each rotation once the clients have made another quarter of their
# signatures, so that all three happen while they sign
signed_at_least() { [ "$(count_lines . "$T"/c/*.ok "$T"/c/*.fail)" -ge "$1" ]; }
for r in 1 2 3; do
        check "clients signed $((r * 2 * N)) times before rotation $r" wait_for 120 signed_at_least $((r * 2 * N))
        expect_exit 0 "rotation $r under load" cli "$OPERATOR_UID" key rotate --principal ci-release --json
        cp "$T/out" "$T/rot$r.json"
done
# a few more after the last rotation, then the clients stop
after=$(count_lines . "$T"/c/*.ok "$T"/c/*.fail)
check "clients signed after the third rotation" wait_for 120 signed_at_least $((after + 8))
touch "$T/c/stop"
for p in "${CLIENTS[@]}"; do wait "$p"; done

got=$(cat "$T"/c/*.ok 2>/dev/null | wc -l)
failed=$(cat "$T"/c/*.fail 2>/dev/null | wc -l)
check "8 clients x at least $N signatures returned during three rotations ($got)" [ "$got" -ge $((8 * N)) ]
expect_eq "$failed" 0 "no request failed during the rotations ($(cat "$T"/c/*.err 2>/dev/null | head -c 300))"
K4=$(jq -r .active.keyid "$T/rot3.json")
expect_eq "$(jq -r .key.keyid "$T/rot1.json")" "$K1" "the first rotation retired the first key"
expect_eq "$(jq -r .key.state "$T/rot1.json")" "retired" "... which is now retired"
expect_eq "$(jq -r .active.generation "$T/rot3.json")" "4" "three rotations: generation 4 is active"

get_bundle bundle1
used=$(cat "$T"/c/*.ok | awk '{print $2}' | sort -u)
bad=0
for k in $used; do
        [ "$(key_field "$T/bundle1.json" "$k" principal)" = "ci-release" ] || { bad=$((bad + 1)); continue; }
        key_field "$T/bundle1.json" "$k" public_key_pem > "$T/pk-$k.pem"
done
expect_eq "$bad" 0 "every key used is in the bundle, as a key of ci-release"
bad=0
while read -r d k sig; do
        verify_sig "$T/pk-$k.pem" "$d" "$sig" || bad=$((bad + 1))
done < <(cat "$T"/c/*.ok)
expect_eq "$bad" 0 "openssl verified all $got signatures against the bundle's key for their keyid"
check "signatures were made with more than one key" [ "$(echo "$used" | wc -w)" -ge 2 ]
expect_eq "$(key_field "$T/bundle1.json" "$K1" state)" "retired" "bundle: first key retired"
expect_eq "$(key_field "$T/bundle1.json" "$K4" state)" "active" "bundle: newest key active"

# Every sign entry names the key that was active at its position: read the
# log's entries in order (as root) and replay the key events.
check "sign entries name the key active at their position" /usr/bin/python3 "$SRCDIR/tests/lib/logcheck.py" "$T/state/log"

# ---- Revoke -----------------------------------------------------------------
expect_exit 0 "revoke the active key" cli "$OPERATOR_UID" key revoke --key "$K4" --reason "laptop stolen" \
        --compromised-since 2026-01-02T03:04:05Z --json
expect_eq "$(jq -r .key.state "$T/out")" "revoked" "revoke reports the key revoked"
expect_eq "$(jq -r .active "$T/out")" "null" "no active key after revoking it"
expect_exit 3 "sign after revocation" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"
expect_stderr_prefix "NO_ACTIVE_KEY" "sign answers NO_ACTIVE_KEY"
expect_exit 3 "revoke twice" cli "$OPERATOR_UID" key revoke --key "$K4" --reason again
expect_stderr_prefix "INVALID_ARGUMENT" "a second revocation is refused"
expect_exit 0 "key list" cli "$OPERATOR_UID" key list --principal ci-release --json
cp "$T/out" "$T/list-before.json"
expect_eq "$(jq -r --arg k "$K4" '.[] | select(.keyid == $k) | .reason' "$T/list-before.json")" "laptop stolen" \
        "key list shows the reason"
expect_eq "$(jq -r --arg k "$K4" '.[] | select(.keyid == $k) | .compromised_since' "$T/list-before.json")" \
        "2026-01-02T03:04:05.000000Z" "key list shows compromised_since"
expect_eq "$(jq length "$T/list-before.json")" "4" "four generations listed"
expect_exit 0 "key list (table)" cli "$OPERATOR_UID" key list
check "the table shows the revocation" grep -q "revoked.*reason \"laptop stolen\"" "$T/out"

# ---- Restart: states unchanged -----------------------------------------------
stop_agent
start_agent
expect_exit 0 "key list after restart" cli "$OPERATOR_UID" key list --principal ci-release --json
expect_eq "$(jq -S . "$T/out")" "$(jq -S . "$T/list-before.json")" "key states identical after a restart"
expect_exit 3 "still no active key after restart" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"
expect_stderr_prefix "NO_ACTIVE_KEY" "NO_ACTIVE_KEY after restart"

# ---- Rotate out of NO_ACTIVE_KEY, destroy ----------------------------------------
expect_exit 0 "rotate after revocation" cli "$OPERATOR_UID" key rotate --principal ci-release --json
K5=$(jq -r .active.keyid "$T/out")
expect_exit 0 "signing works again" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" --json
expect_eq "$(jq -r .keyid "$T/out")" "$K5" "the new key signs"

# privkeys FILE: the IDs of the token's private keys, one a line, into FILE;
# fails when pkcs11-tool fails (an empty listing is then no proof of absence)
privkeys() {
        PROVSIGN_PIN=$(cat "$T/tok/pin") pkcs11-tool --module "$MODULE" --token-label provsign --login \
                --pin env:PROVSIGN_PIN --list-objects --type privkey > "$T/objects" 2>"$T/objects.err" ||
                { echo "pkcs11-tool failed: $(cat "$T/objects.err")" >&2; return 1; }
        awk '/ID:/ {print $2}' "$T/objects" > "$1"
}
check "pkcs11-tool lists the private keys" privkeys "$T/ids-before"
check "before destroy: the first key's private object is on the token" grep -qx "$K1" "$T/ids-before"
expect_exit 0 "destroy the retired first key" cli "$OPERATOR_UID" key destroy --key "$K1" --json
expect_eq "$(jq -r .key.state "$T/out")" "destroyed" "destroy reports the key destroyed"
check "after destroy: pkcs11-tool lists the private keys" privkeys "$T/ids-after"
check "... the active key's among them" grep -qx "$K5" "$T/ids-after"
check "... and the destroyed key's is gone" bash -c '! grep -qx "$1" "$2"' _ "$K1" "$T/ids-after"
expect_eq "$(wc -l < "$T/ids-after")" "$(($(wc -l < "$T/ids-before") - 1))" "... one private key fewer"
expect_exit 0 "destroy the revoked key" cli "$OPERATOR_UID" key destroy --key "$K4" --json
expect_eq "$(jq -r .key.state "$T/out")" "revoked" "a destroyed revoked key stays revoked"
check "its destruction time is recorded" [ "$(jq -r .key.destroyed "$T/out")" != null ]
expect_exit 3 "destroy twice" cli "$OPERATOR_UID" key destroy --key "$K1"
expect_stderr_prefix "INVALID_ARGUMENT" "a second destroy is refused"
get_bundle bundle2
expect_eq "$(key_field "$T/bundle2.json" "$K1" state)" "destroyed" "bundle: destroyed key still listed"
check "bundle: the destroyed key's public key is still there" cmp -s \
        <(key_field "$T/bundle2.json" "$K1" public_key_pem) <(key_field "$T/bundle1.json" "$K1" public_key_pem)
expect_eq "$(key_field "$T/bundle2.json" "$K4" compromised_since)" "2026-01-02T03:04:05.000000Z" \
        "bundle: compromised_since of the revoked key"
expect_exit 0 "public key of a destroyed key by id" cli "$RUNNER_UID" key pubkey --key "$K1"

# A tampered bundle no longer verifies.
/usr/bin/python3 - "$T/bundle2" "$T/bundle-tampered" <<'EOF'
import base64, json, sys
env = json.load(open(sys.argv[1]))
b = json.loads(base64.b64decode(env["payload"]))
for k in b["keys"]:
    if k["state"] == "revoked":
        k["state"], k["revoked"], k["compromised_since"] = "retired", None, None
env["payload"] = base64.b64encode(json.dumps(b).encode()).decode()
json.dump(env, open(sys.argv[2], "w"))
EOF
check "the tampered bundle differs from the signed one" bash -c "[ -s '$T/bundle-tampered' ] && ! cmp -s '$T/bundle2' '$T/bundle-tampered'"
if bundle_check "$T/bundle-tampered" 2>/dev/null; then fail "a tampered bundle verified"; else pass "a tampered bundle fails verification"; fi

# ---- auto_rotate_on_revoke and scheduled rotation --------------------------------
stop_agent
write_config "auto_rotate_on_revoke = yes"
sed -i 's/^algorithm = ecdsa-p384$/algorithm = ecdsa-p384\nrotate_after = 2s/' "$CONF"
start_agent
expect_exit 0 "revoke with auto_rotate_on_revoke" cli "$OPERATOR_UID" key revoke --key "$K5" --reason compromised --json
K6=$(jq -r .active.keyid "$T/out")
check "a successor is active at once ($K6)" bash -c '[ -n "$1" ] && [ "$1" != null ] && [ "$1" != "$2" ]' _ "$K6" "$K5"
expect_exit 0 "sign right after the revocation" cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" --json
expect_eq "$(jq -r .keyid "$T/out")" "$K6" "signed with the automatic successor"

expect_exit 0 "nightly key" cli "$RUNNER2_UID" key pubkey --principal ci-nightly --json
N1=$(jq -r .keyid "$T/out")
nightly_rotated() {
        cli "$RUNNER2_UID" key pubkey --principal ci-nightly --json > "$T/n.json" 2>/dev/null &&
                [ "$(jq -r .keyid "$T/n.json")" != "$N1" ]
}
check "rotate_after = 2s rotated ci-nightly by itself" wait_for 30 nightly_rotated
expect_eq "$(jq -r .algorithm "$T/n.json")" "ecdsa-p384" "the scheduled successor keeps the principal's algorithm"
check "the scheduled rotation is in the agent's log" grep -q "scheduled rotation" "$T/agent.log"

# ---- a key bundle over one frame: ~100 keys travel in parts -----------------
as "$OPERATOR_UID" env PYTHONPATH="$SRCDIR/tests/lib" SOCK="$SOCK" /usr/bin/python3 -c '
import os
from rawclient import *
s = connect(os.environ["SOCK"])
for i in range(90):
    s.sendall(frame(request(17, field_bytes(1, b"ci-release"))))
    st, msg, _ = read_response(s)
    assert st == "OK", (i, st, msg)
s.close()' > "$T/rot90" 2>&1 || fail "90 rotations: $(cat "$T/rot90")"
as "$STRANGER_UID" /usr/bin/python3 "$SRCDIR/tests/lib/rawclient.py" bundle --parts > "$T/big" 2>"$T/big.parts" ||
        fail "GetKeyBundle of ~100 keys: $(cat "$T/big.parts")"
parts=$(sed -n 's/^parts: //p' "$T/big.parts")
check "the ~100-key bundle came in more than one frame (${parts:-?} parts)" test "${parts:-0}" -ge 2
check "the parts together are one envelope whose signature verifies" bundle_check "$T/big"
check "... listing every key (over 90)" test "$(jq '.keys | length' "$T/big.json")" -gt 90
mkdir -p "$T/bw"
chmod 0777 "$T/bw"
expect_exit 0 "provsign key bundle fetches the same multi-frame bundle" cli "$STRANGER_UID" key bundle -o "$T/bw/big-cli"
printf 'big bundle\n' > "$T/big.txt"
chmod 0644 "$T/big.txt"
expect_exit 0 "attest with the 91st key" cli "$RUNNER_UID" attest --principal ci-release --type text/plain "$T/big.txt"
cp "$T/out" "$T/big-att.json"
expect_exit 0 "provsign verify finds the key in the multi-frame bundle" "$PROVSIGN_CLI" verify --bundle "$T/bw/big-cli" \
        --log-key "$T/logkey.pem" "$T/big-att.json"
# a client that does not say it reads parts (as before parts existed) gets
# a clean refusal for a bundle over one frame, and its connection goes on
check "without in_parts, a bundle over one frame is refused with UNAVAILABLE; the connection still answers" \
        as "$STRANGER_UID" env PYTHONPATH="$SRCDIR/tests/lib" SOCK="$SOCK" /usr/bin/python3 -c '
import os
from rawclient import *
s = connect(os.environ["SOCK"])
s.sendall(frame(request(14)))
st, msg, _ = read_response(s)
assert st == "UNAVAILABLE" and "--principal" in msg, (st, msg)
s.sendall(frame(status_request()))
st, msg, _ = read_response(s)
assert st == "OK", (st, msg)'

# one principal's bundle: its keys only, and enough to verify its signatures
expect_exit 0 "key bundle --principal ci-nightly" cli "$STRANGER_UID" key bundle --principal ci-nightly -o "$T/bw/nightly"
check "... is signed by the log key" bundle_check "$T/bw/nightly"
check "... and lists only ci-nightly's keys" jq -e '(.keys | length) >= 1 and all(.keys[]; .principal == "ci-nightly")' "$T/bw/nightly.json"
expect_exit 1 "a ci-release envelope does not verify against ci-nightly's bundle" "$PROVSIGN_CLI" verify \
        --bundle "$T/bw/nightly" --log-key "$T/logkey.pem" "$T/big-att.json"
expect_stderr_prefix "provsign: verify: key not in the bundle:" "... because the key is not in it"
check "a one-principal bundle names its principal" jq -e '.principal == "ci-nightly"' "$T/bw/nightly.json"
check "the full bundle names none" jq -e 'has("principal") | not' "$T/big.json"
expect_exit 0 "key bundle --principal ci-release" cli "$STRANGER_UID" key bundle --principal ci-release -o "$T/bw/release"
expect_exit 0 "... verifies ci-release's envelope" "$PROVSIGN_CLI" verify --bundle "$T/bw/release" \
        --log-key "$T/logkey.pem" "$T/big-att.json"
expect_exit 3 "key bundle of an unknown principal" cli "$STRANGER_UID" key bundle --principal nobody
expect_stderr_prefix "NOT_FOUND" "... is NOT_FOUND"

check "sign entries still name the active key" /usr/bin/python3 "$SRCDIR/tests/lib/logcheck.py" "$T/state/log"
check "agent alive" agent_alive
stop_agent
finish
