#!/bin/bash
# Many hosts, one HSM (docs/fleet.md): three agents (own state dirs, log
# origins and sockets; principals of the same names) share one SoftHSM2
# token served by `p11-kit server`, the stand-in for a network HSM.
#
# The token starts as a first-round single-agent token (labels
# provsign/<principal>/<gen>, provsign/log/<gen>): agent A, the upgraded
# former single agent, adopts those objects into its namespace once; B and C
# join and adopt nothing. All three sign at once; A rotates, revokes and
# destroys; each agent's key list, key bundle and exported log hold exactly
# its own keys and events, and B's and C's token objects are the same
# before and after (pkcs11-tool through the server, and the SoftHSM2 object
# files). A fourth agent configured with B's namespace is refused; B itself
# restarts. Prints signatures per agent and the three agents' concurrent
# throughput on one p11-kit server as figures.
. "$SRCDIR/tests/lib/common.sh"
. "$SRCDIR/tests/lib/p11server.sh"
. "$SRCDIR/tests/lib/fleet.sh"
setup_test
p11_setup
command -v pkcs11-tool >/dev/null || { echo "FAIL: pkcs11-tool not found (Debian package opensc)" >&2; exit 1; }

NAMES=(a b c)
ns_of() { echo "ci-$1.fleet.test"; }
declare -A LOGKEY OK

# p11 ARGS...: pkcs11-tool as the agent's user (the token's files are its
# own), logged in; stderr kept for the failure message.
p11() {
        PROVSIGN_PIN=$(cat "$T/tok/pin") setpriv --reuid="$AGENT_UID" --regid="$AGENT_GID" --clear-groups \
                env SOFTHSM2_CONF="$SOFTHSM2_CONF" "$@" --login --pin env:PROVSIGN_PIN 2>"$T/p11.err"
}
# objects OUT: every object on the token, listed through the p11-kit server
# (the agents' view); fails when pkcs11-tool fails (an empty listing is no
# proof of anything).
objects() {
        p11 env "P11_KIT_SERVER_ADDRESS=unix:path=$P11SOCK" pkcs11-tool --module "$CLIENT_MODULE" \
                --token-label provsign --list-objects >"$1" ||
                { echo "pkcs11-tool --list-objects failed: $(cat "$T/p11.err")" >&2; return 1; }
        grep -q 'Object' "$1" || { echo "pkcs11-tool listed no objects" >&2; return 1; }
}
ns_objects() { python3 "$SRCDIR/tests/lib/p11objects.py" "$1" <"$2"; }
# object_files OUT: sha256 and name of each SoftHSM2 object file (not the
# token's own token.object), sorted by name.
object_files() {
        (cd "$T/tok/tokens" && find . -name '*.object' ! -name token.object -print0 | sort -z |
                xargs -0 sha256sum) >"$1"
}

# ---- A first-round token: one agent's labels, no namespace ----------------
# (pkcs11-tool on SoftHSM2 directly: generate, then set CKA_ID to the key
# id, the SHA-256 of the DER SubjectPublicKeyInfo, as that agent did)
legacy_key() { # LABEL TMPID
        p11 pkcs11-tool --module "$MODULE" --token-label provsign --keypairgen --key-type EC:prime256v1 \
                --label "$1" --id "$2" --usage-sign >/dev/null || { echo "keypairgen: $(cat "$T/p11.err")" >&2; return 1; }
        p11 pkcs11-tool --module "$MODULE" --token-label provsign --read-object --type pubkey --id "$2" \
                -o "$T/p11/legacy.der" >/dev/null || { echo "read-object: $(cat "$T/p11.err")" >&2; return 1; }
        cp "$T/p11/legacy.der" "$T/legacy-$2.der"
        local id
        id=$(openssl pkey -pubin -inform DER -in "$T/p11/legacy.der" -outform DER | sha256sum | cut -d' ' -f1)
        local t
        for t in privkey pubkey; do
                p11 pkcs11-tool --module "$MODULE" --token-label provsign --set-id "$id" --id "$2" --type "$t" \
                        >/dev/null || { echo "set-id: $(cat "$T/p11.err")" >&2; return 1; }
        done
        echo "$id"
}
chmod 0755 "$T"
L_REL=$(legacy_key provsign/ci-release/1 01) || { fail "first-round key ci-release"; finish; exit 1; }
L_LOG=$(legacy_key provsign/log/1 02) || { fail "first-round log key"; finish; exit 1; }
openssl pkey -pubin -inform DER -in "$T/legacy-01.der" -out "$T/legacy-release.pem"

start_p11
MODULE=$CLIENT_MODULE
check "pkcs11-tool lists the first-round token through the server" objects "$T/obj0"
ns_objects --legacy "$T/obj0" >"$T/legacy0"
expect_eq "$(grep -c '^Private Key Object' "$T/legacy0")" 2 "the token holds two first-round private keys"

# ---- Three agents ----------------------------------------------------------
for n in "${NAMES[@]}"; do fleet_config "$n"; done
start_fleet a
check "A logged the adoption of the first-round ci-release key" \
        grep -q "key $L_REL: first-round label \"provsign/ci-release/1\" adopted into key namespace \"ci-a.fleet.test\"" "$T/a/agent.log"
check "... and of the first-round log key" \
        grep -q "key $L_LOG: first-round label \"provsign/log/1\" adopted" "$T/a/agent.log"
start_fleet b
start_fleet c

check "pkcs11-tool lists the token with three agents on it" objects "$T/obj1"
expect_eq "$(ns_objects --legacy "$T/obj1" | wc -c)" 0 "no first-round label is left on the token"
expect_eq "$(grep -c "label: *provsign/ci-a.fleet.test/ci-release/1$" "$T/obj1")" 2 \
        "the first-round ci-release pair now carries A's label (both halves)"
expect_eq "$(grep -c "label: *provsign/ci-a.fleet.test/log/1$" "$T/obj1")" 2 "... and so does the log key's"
for n in "${NAMES[@]}"; do
        expect_eq "$(grep -c "label: *'provsign/$(ns_of "$n")/owner'" "$T/obj1")" 1 "one owner marker for $(ns_of "$n")"
done

# keys_of NAME: "keyid principal generation state" of NAME's key list, sorted
keys_of() {
        acli "$1" "$OPERATOR_UID" key list --json >"$T/$1/keys.json" 2>"$T/err" ||
                { echo "key list of $1: $(cat "$T/err")" >&2; return 1; }
        jq -r '.[] | "\(.keyid) \(.principal) \(.generation) \(.state)"' "$T/$1/keys.json" | sort
}
# token_ids NAME: the CKA_IDs of NAME's private keys on the token (listing $2), sorted
token_ids() {
        ns_objects "$(ns_of "$1")" "$2" | awk '/^Private Key Object/ {p = 1} /^--$/ {p = 0} p && /ID:/ {print $2}' | sort
}
log_key_id() {
        acli "$1" "$AUDITOR_UID" audit log-key >"$T/$1/logkey.pem" 2>"$T/err" || return 1
        openssl pkey -pubin -in "$T/$1/logkey.pem" -outform DER | sha256sum | cut -d' ' -f1
}
for n in "${NAMES[@]}"; do
        keys_of "$n" >"$T/$n/keys0" || fail "key list of $n"
        LOGKEY[$n]=$(log_key_id "$n") || fail "log key of $n"
        expect_eq "$(awk '{print $2, $3, $4}' "$T/$n/keys0" | sort | tr '\n' ,)" \
                "ci-nightly 1 active,ci-release 1 active," "$n lists one active key per principal"
        expect_eq "$(token_ids "$n" "$T/obj1" | tr '\n' ,)" \
                "$( (awk '{print $1}' "$T/$n/keys0"; echo "${LOGKEY[$n]}") | sort | tr '\n' ,)" \
                "$n's private keys on the token are exactly its listed keys and its log key"
done
expect_eq "$(grep ' ci-release ' "$T/a/keys0" | cut -d' ' -f1)" "$L_REL" "A's ci-release key is the adopted first-round key"
expect_eq "${LOGKEY[a]}" "$L_LOG" "A's log key is the adopted first-round log key"
expect_eq "$(cat "$T"/{a,b,c}/keys0 | awk '{print $1}' | sort | uniq -d | wc -l)" 0 \
        "no key id is listed by two agents"
expect_eq "$(printf '%s\n' "${LOGKEY[@]}" | sort -u | wc -l)" 3 "three log keys"
for n in b c; do
        check "$n adopted nothing from the token" bash -c "! grep -q 'adopted' '$T/$n/agent.log'"
done

# ---- All three sign at once ------------------------------------------------
CONNS=${PROVSIGN_TEST_FLEET_CONNS:-4}
EACH=${PROVSIGN_TEST_FLEET_EACH:-100}
mkdir -p "$T/sig"
chmod 0777 "$T/sig"
for n in "${NAMES[@]}"; do
        acli "$n" "$RUNNER_UID" key pubkey --principal ci-release >"$T/$n/release.pem" || fail "pubkey of $n"
        as "$RUNNER_UID" python3 "$SRCDIR/tests/lib/signmany.py" "$T/$n/run/agent.sock" ci-release "$CONNS" "$EACH" \
                "$T/sig/go" "$T/sig/$n" 2>"$T/sig/$n.err" &
        SIGNERS+=($!)
done
check "A signs ci-release with the first-round key" cmp "$T/legacy-01.der" \
        <(openssl pkey -pubin -in "$T/a/release.pem" -outform DER)
touch "$T/sig/go"
for p in "${SIGNERS[@]}"; do wait "$p" || fail "signer $p: $(cat "$T"/sig/*.err | head -c 300)"; done
for n in "${NAMES[@]}"; do
        OK[$n]=$(grep -c '^OK ' "$T/sig/$n")
        expect_eq "${OK[$n]}" $((CONNS * EACH)) "$n: $CONNS connections x $EACH signatures, all OK"
        bad=0
        while read -r _ d sig; do verify_sig "$T/$n/release.pem" "$d" "$sig" || bad=$((bad + 1)); done <"$T/sig/$n"
        expect_eq "$bad" 0 "openssl verified $n's ${OK[$n]} signatures with $n's own ci-release key"
        awk '{print $2}' "$T/sig/$n" | sort >"$T/sig/$n.digests"
done
figures=$(python3 - "$T/sig" <<'PY'
import sys
d = sys.argv[1]
spans, total = [], 0
for n in "abc":
    s, e = map(int, open("%s/%s.time" % (d, n)).read().split())
    ok = sum(1 for l in open("%s/%s" % (d, n)) if l.startswith("OK "))
    spans.append((s, e)); total += ok
    print("agent %s: %d signatures in %.2f s (%.0f/s)" % (n, ok, (e - s) / 1e9, ok / ((e - s) / 1e9)))
s = min(x[0] for x in spans); e = max(x[1] for x in spans)
print("three agents at once on one p11-kit server: %d signatures in %.2f s = %.0f signatures/s" % (total, (e - s) / 1e9, total / ((e - s) / 1e9)))
PY
)
echo "$figures"

# ---- Rotate, revoke and destroy on A; B and C untouched ---------------------
check "pkcs11-tool lists the token before A's key operations" objects "$T/obj2"
object_files "$T/files2"
K_A1=$L_REL
expect_exit 0 "A rotates ci-release" acli a "$OPERATOR_UID" key rotate --principal ci-release --json
K_A2=$(jq -r .active.keyid "$T/out")
expect_exit 0 "A revokes its retired first key" acli a "$OPERATOR_UID" key revoke --key "$K_A1" \
        --reason "fleet test" --compromised-since 2026-01-02T03:04:05Z --json
expect_exit 0 "A destroys it" acli a "$OPERATOR_UID" key destroy --key "$K_A1" --json
expect_exit 3 "B does not know A's key (nothing to revoke)" acli b "$OPERATOR_UID" key revoke --key "$K_A2" --reason x
expect_stderr_prefix "NOT_FOUND" "... NOT_FOUND"
check "pkcs11-tool lists the token after A's key operations" objects "$T/obj3"
object_files "$T/files3"
for n in b c; do
        ns_objects "$(ns_of "$n")" "$T/obj2" >"$T/$n/before"
        ns_objects "$(ns_of "$n")" "$T/obj3" >"$T/$n/after"
        check "$n's objects on the token are byte-identical before and after ($(grep -c Object "$T/$n/before") objects)" \
                cmp "$T/$n/before" "$T/$n/after"
done
# the object files: every one that was there is unchanged or gone; gone is
# one file (A's destroyed private key), new are two (A's new pair)
gone=$(join -1 2 -2 2 -v 1 <(sort -k2 "$T/files2") <(sort -k2 "$T/files3") | wc -l)
new=$(join -1 2 -2 2 -v 2 <(sort -k2 "$T/files2") <(sort -k2 "$T/files3") | wc -l)
changed=$(join -1 2 -2 2 <(sort -k2 "$T/files2") <(sort -k2 "$T/files3") | awk '$2 != $3' | wc -l)
expect_eq "$changed/$gone/$new" "0/1/2" \
        "SoftHSM2 object files: none changed, one gone (A's destroyed key), two new (A's rotation)"
ns_objects ci-a.fleet.test "$T/obj3" >"$T/a/after"
expect_eq "$(grep -c "label: *provsign/ci-a.fleet.test/ci-release/2$" "$T/a/after")" 2 "A's new pair is labelled in its namespace"
expect_eq "$(token_ids a "$T/obj3" | grep -c "$K_A1")" 0 "A's destroyed key has no private object left"

# ---- Each agent's key list, key bundle and log hold its own ----------------
for n in "${NAMES[@]}"; do
        keys_of "$n" >"$T/$n/keys1" || fail "key list of $n"
        acli "$n" "$STRANGER_UID" key bundle >"$T/$n/bundle.json" 2>"$T/err" || fail "bundle of $n: $(cat "$T/err")"
        python3 - "$T/$n/bundle.json" "$T/$n/logkey.pem" "$T/$n/bundle-keys" <<'PY' || fail "bundle of $n does not verify"
import base64, json, os, subprocess, sys, tempfile
env = json.load(open(sys.argv[1]))
payload = base64.b64decode(env["payload"])
t = env["payloadType"].encode()
pae = b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)
with tempfile.TemporaryDirectory() as d:
    open(d + "/pae", "wb").write(pae)
    open(d + "/sig", "wb").write(base64.b64decode(env["signatures"][0]["sig"]))
    subprocess.run(["openssl", "dgst", "-sha256", "-verify", sys.argv[2], "-signature", d + "/sig", d + "/pae"],
                   check=True, capture_output=True)
keys = json.loads(payload)["keys"]
open(sys.argv[3], "w").write("".join(sorted("%s %s %s %s\n" % (k["keyid"], k["principal"], k["generation"], k["state"]) for k in keys)))
PY
        expect_eq "$(cat "$T/$n/bundle-keys")" "$(cat "$T/$n/keys1")" "$n's bundle (signed by its log key) lists exactly its key list"
        acli "$n" "$AUDITOR_UID" audit export >"$T/$n/export.jsonl" 2>"$T/err" || fail "export of $n: $(cat "$T/err")"
        acli "$n" "$AUDITOR_UID" audit verify --log-key "$T/$n/logkey.pem" "$T/$n/export.jsonl" >"$T/out" 2>"$T/err"
        expect_eq "$?" 0 "$n's export verifies against its log key"
        jq -r 'select(.event == "SIGN") | .digest' "$T/$n/export.jsonl" | sed 's/^sha256://' | sort >"$T/$n/logged"
        check "$n's log holds exactly the signatures made through $n (${OK[$n]})" cmp "$T/$n/logged" "$T/sig/$n.digests"
        jq -r 'select(.event // "" | test("^KEY_")) | .keyid' "$T/$n/export.jsonl" | sort -u >"$T/$n/event-keys"
        (awk '{print $1}' "$T/$n/keys1"; echo "${LOGKEY[$n]}") | sort -u >"$T/$n/own-keys"
        check "$n's key events name only its own keys" bash -c "comm -23 '$T/$n/event-keys' '$T/$n/own-keys' | grep -q . && exit 1 || exit 0"
done
expect_eq "$(awk '{print $2, $3, $4}' "$T/a/keys1" | sort | tr '\n' ,)" "ci-nightly 1 active,ci-release 1 revoked,ci-release 2 active," \
        "A lists its rotated, revoked key and its successor"
for n in b c; do
        check "$n's key list did not change" cmp "$T/$n/keys0" "$T/$n/keys1"
        expect_eq "$(jq -r 'select(.event // "" | test("^KEY_(ROTATE|REVOKE|DESTROY)")) | .event' "$T/$n/export.jsonl" | wc -l)" 0 \
                "$n's log has no rotation, revocation or destruction"
done
expect_eq "$(jq -r 'select(.event // "" | test("^KEY_(ROTATE|REVOKE|DESTROY)$")) | .event' "$T/a/export.jsonl" | tr '\n' ,)" \
        "KEY_ROTATE,KEY_REVOKE,KEY_DESTROY," "A's log has its rotation, revocation and destruction"
# (the entry's message is in its leaf bytes, the protobuf AuditEntry)
check "A's log says which key was adopted from a first-round label" python3 -c '
import base64, json, sys
es = [json.loads(l) for l in open(sys.argv[1]) if "\"event\"" in l]
hits = [e for e in es if e.get("event") == "KEY_CREATE" and e.get("keyid") == sys.argv[2]
        and b"adopted from the token (first-round label provsign/ci-release/1)" in base64.b64decode(e["leaf"])]
sys.exit(len(hits) != 1)' "$T/a/export.jsonl" "$L_REL"

# ---- One namespace, one agent -----------------------------------------------
fleet_config d "key_namespace = ci-b.fleet.test"
agent_argv
"${AGENT_ARGV[@]}" --config "$T/d/agent.conf" >"$T/out" 2>"$T/err"
expect_eq "$?" 1 "a second agent configured with B's namespace refuses to start"
check "... saying whose namespace it is" grep -qF \
        'key namespace "ci-b.fleet.test" on token "provsign" belongs to another agent'"'"'s state' "$T/err"
check "... naming B's origin from the owner marker" grep -qF 'origin ci-b.fleet.test/provsign' "$T/err"
check "pkcs11-tool lists the token after the refusal" objects "$T/obj4"
ns_objects ci-b.fleet.test "$T/obj4" >"$T/b/after-d"
check "B's objects are unchanged by the refused agent" cmp "$T/b/after" "$T/b/after-d"
stop_fleet b
start_fleet b
expect_exit 0 "B restarts on its own state (its owner marker matches) and signs" \
        acli b "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)"
check "B's restart logged no refusal" bash -c "! grep -q 'belongs to another' '$T/b/agent.log'"

# Two fresh agents claim one namespace at the same moment, several rounds
# (PROVSIGN_TEST_NAMESPACE_RACE_ROUNDS, default 3), each on a namespace of
# its own. PKCS#11 has no create-if-absent, so each looks again (a few times)
# after creating its marker. Whatever the interleaving, at most one runs, a
# refused one exits 1 saying why (no crash: an agent starting while another
# of its namespace generated keys used to die with SIGSEGV in libp11), and
# the token keeps exactly the markers of the agents that run: when neither
# runs, the namespace is free and the next start claims it.
ROUNDS=${PROVSIGN_TEST_NAMESPACE_RACE_ROUNDS:-3}
race_counts=
settled() { # NAME: it is ready, or it has exited
        grep -q ' ready: ' "$T/$1/agent.log" || ! kill -0 "${PID[$1]}" 2>/dev/null
}
for round in $(seq 1 "$ROUNDS"); do
        ns=race$round.fleet.test
        for n in e1 e2; do
                rm -rf "${T:?}/$n"
                fleet_config "$n" "key_namespace = $ns"
        done
        agent_argv
        for n in e1 e2; do
                "${AGENT_ARGV[@]}" --config "$T/$n/agent.conf" 2>>"$T/$n/agent.log" &
                PID[$n]=$!
        done
        check "round $round: both racing agents settled (ready or refused)" wait_for 120 eval 'settled e1 && settled e2'
        ready=0
        for n in e1 e2; do
                if grep -q ' ready: ' "$T/$n/agent.log"; then
                        ready=$((ready + 1))
                else
                        wait "${PID[$n]}"
                        expect_eq "$?" 1 "round $round: racing agent $n was refused with exit 1 (no crash)"
                        if grep -qE "belongs to another agent's state|claimed by another agent at the same moment" "$T/$n/agent.log"; then
                                pass "... saying why"
                        else
                                fail "... saying why; its log: $(grep -v '^<[67]>' "$T/$n/agent.log" | tail -5)"
                        fi
                        PID[$n]=
                fi
        done
        check "round $round: at most one of two agents racing for one namespace runs" [ "$ready" -le 1 ]
        check "pkcs11-tool lists the token after the race" objects "$T/obj5"
        expect_eq "$(grep -c "label: *'provsign/$ns/owner'" "$T/obj5")" "$ready" \
                "round $round: the token holds one owner marker per running agent of the namespace ($ready)"
        race_counts+=" $ready"
        for n in e1 e2; do [ -n "${PID[$n]}" ] && stop_fleet "$n"; done
        if [ "$ready" = 0 ]; then
                # both refused: nothing of theirs wedges the namespace
                start_fleet e1
                pass "round $round: after both were refused, one of them starts on the namespace"
                stop_fleet e1
        fi
done
echo "namespace race: agents running after each of $ROUNDS rounds:$race_counts"

for n in "${NAMES[@]}"; do stop_fleet "$n"; done
echo "$figures"
finish
