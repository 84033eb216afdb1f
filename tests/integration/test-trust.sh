#!/bin/bash
# Trusting a fleet of logs (docs/fleet.md "Trust file"): three agents (own
# state dirs, log origins, log keys and sockets) on one SoftHSM2 token served
# by `p11-kit server`. A trust file lists the note verifier keys of two of
# them (A and B): their envelopes and receipts verify with --trust, C's are
# refused naming C's origin; a bundle of another listed log than the
# receipt's is refused; audit verify --trust over A's and B's published tile
# directories prints one line per origin, with --state a second run (after
# more signing) says consistent; a directory with a swapped checkpoint, a
# rolled-back log, an unlisted log and a malformed trust file fail; exports
# are checked the same way, mixed with directories.
. "$SRCDIR/tests/lib/common.sh"
. "$SRCDIR/tests/lib/p11server.sh"
. "$SRCDIR/tests/lib/fleet.sh"
setup_test
p11_setup
start_p11
MODULE=$CLIENT_MODULE

NAMES=(a b c)
origin_of() { echo "ci-$1.fleet.test/provsign"; }
# published NAME: NAME's publish_dir holds the checkpoint of its log's
# current size (the publisher runs behind the writer)
published() {
        local want
        want=$(acli "$1" "$AUDITOR_UID" audit checkpoint 2>/dev/null | sed -n 2p)
        [ -n "$want" ] && [ "$(sed -n 2p "$T/$1/state/tlog/checkpoint" 2>/dev/null)" = "$want" ]
}
# snapshot NAME DIR: a copy of NAME's published tiles, once current
snapshot() {
        wait_for 60 published "$1" || { fail "$1 published its current checkpoint"; return 1; }
        rm -rf "$2"
        cp -a "$T/$1/state/tlog" "$2"
}

printf 'hello, fleet\n' >"$T/note.txt"
chmod 0644 "$T/note.txt"
mkdir -p "$T/w"
chmod 0777 "$T/w"
for n in "${NAMES[@]}"; do
        fleet_config "$n"
        start_fleet "$n"
        acli "$n" "$AUDITOR_UID" audit log-key --json >"$T/$n/logkey.json" || fail "log key of $n"
        jq -r .public_key_pem "$T/$n/logkey.json" >"$T/$n/logkey.pem"
        acli "$n" "$RUNNER_UID" attest --principal ci-release --type text/plain --receipt "$T/w/$n.receipt" \
                "$T/note.txt" >"$T/$n/att.json" 2>"$T/err" || fail "attest through $n: $(cat "$T/err")"
        acli "$n" "$STRANGER_UID" key bundle >"$T/$n/bundle.json" 2>"$T/err" || fail "bundle of $n: $(cat "$T/err")"
done
expect_eq "$(jq -r .verifier_key "$T"/{a,b,c}/logkey.json | cut -d+ -f1 | tr '\n' ,)" \
        "$(origin_of a),$(origin_of b),$(origin_of c)," "each agent's verifier key is named by its own origin"

{
        echo "# the logs this deploy job trusts"
        echo
        jq -r .verifier_key "$T/a/logkey.json"
        echo "   $(jq -r .verifier_key "$T/b/logkey.json")   "
} >"$T/trust"

# ---- provsign verify / receipt verify --trust --------------------------------
for n in a b; do
        expect_exit 0 "$n's receipt verifies with --trust" cli "$AUDITOR_UID" receipt verify --trust "$T/trust" "$T/w/$n.receipt"
        check "... and names $n's origin" grep -qxF "origin:     $(origin_of "$n")" "$T/out"
        expect_exit 0 "$n's envelope, bundle and receipt verify with --trust" cli "$AUDITOR_UID" verify \
                --bundle "$T/$n/bundle.json" --trust "$T/trust" --receipt "$T/w/$n.receipt" "$T/$n/att.json"
        expect_exit 0 "$n's envelope and bundle verify with --trust, no receipt" cli "$AUDITOR_UID" verify \
                --bundle "$T/$n/bundle.json" --trust "$T/trust" "$T/$n/att.json"
done
expect_exit 1 "C's receipt is refused" cli "$AUDITOR_UID" receipt verify --trust "$T/trust" "$T/w/c.receipt"
check "... naming C's origin" grep -qF "origin \"$(origin_of c)\" is not in the trust file" "$T/err"
expect_exit 1 "C's envelope with its receipt is refused" cli "$AUDITOR_UID" verify \
        --bundle "$T/c/bundle.json" --trust "$T/trust" --receipt "$T/w/c.receipt" "$T/c/att.json"
check "... naming C's origin" grep -qF "origin \"$(origin_of c)\" is not in the trust file" "$T/err"
expect_exit 1 "C's envelope without a receipt is refused (its bundle's key is not listed)" cli "$AUDITOR_UID" verify \
        --bundle "$T/c/bundle.json" --trust "$T/trust" "$T/c/att.json"
check "... saying so" grep -qF "not signed by a log key in the trust file" "$T/err"
expect_exit 1 "A's envelope and receipt with B's bundle (another listed log) is refused" cli "$AUDITOR_UID" verify \
        --bundle "$T/b/bundle.json" --trust "$T/trust" --receipt "$T/w/a.receipt" "$T/a/att.json"
check "... the bundle is not signed by the receipt's log key" grep -qF "no signature by the trusted log key" "$T/err"
expect_exit 1 "A's envelope with B's bundle, no receipt, is refused" cli "$AUDITOR_UID" verify \
        --bundle "$T/b/bundle.json" --trust "$T/trust" "$T/a/att.json"
expect_exit 0 "--log-key works as before" cli "$AUDITOR_UID" verify \
        --bundle "$T/c/bundle.json" --log-key "$T/c/logkey.pem" --receipt "$T/w/c.receipt" "$T/c/att.json"
expect_exit 2 "--trust and --log-key together are a usage error (verify)" cli "$AUDITOR_UID" verify \
        --bundle "$T/a/bundle.json" --trust "$T/trust" --log-key "$T/a/logkey.pem" "$T/a/att.json"
expect_exit 2 "... (receipt verify)" cli "$AUDITOR_UID" receipt verify --trust "$T/trust" --log-key "$T/a/logkey.pem" \
        "$T/w/a.receipt"

# ---- malformed trust files: FILE:LINE, exit 5 ----------------------------------
printf '# ok\n%s\nnot-a-key\n' "$(jq -r .verifier_key "$T/a/logkey.json")" >"$T/bad1"
expect_exit 5 "a line that is not a verifier key" cli "$AUDITOR_UID" receipt verify --trust "$T/bad1" "$T/w/a.receipt"
check "... is named FILE:LINE" grep -qF "$T/bad1:3: " "$T/err"
jq -r .verifier_key "$T/a/logkey.json" | sed 's/+\([0-9a-f]\)\([0-9a-f]\)/+\2\1/' >"$T/bad2"
if cmp -s "$T/bad2" <(jq -r .verifier_key "$T/a/logkey.json"); then sed -i 's/+[0-9a-f]\{8\}+/+00000000+/' "$T/bad2"; fi
expect_exit 5 "a wrong key hash" cli "$AUDITOR_UID" verify --bundle "$T/a/bundle.json" --trust "$T/bad2" "$T/a/att.json"
check "... is named FILE:LINE" grep -qF "$T/bad2:1: the key hash does not match the key" "$T/err"
(jq -r .verifier_key "$T/a/logkey.json"; jq -r .verifier_key "$T/a/logkey.json") >"$T/bad3"
expect_exit 5 "an origin listed twice" cli "$AUDITOR_UID" audit verify --trust "$T/bad3" "$T/a/state/tlog"
check "... is named FILE:LINE" grep -qF "$T/bad3:2: origin" "$T/err"
printf '# nothing\n\n' >"$T/bad4"
expect_exit 5 "a trust file with no key" cli "$AUDITOR_UID" receipt verify --trust "$T/bad4" "$T/w/a.receipt"

# ---- audit verify --trust over published tile directories -----------------------
mkdir -p "$T/pub"
for n in a b c; do snapshot "$n" "$T/pub/$n"; done
chmod -R a+rX "$T/pub"
mkdir -p "$T/aud"
chown "$AUDITOR_UID" "$T/aud"
ST=$T/aud/state.json
expect_exit 0 "audit verify --trust over A's and B's tiles" cli "$AUDITOR_UID" audit verify --trust "$T/trust" \
        --state "$ST" "$T/pub/a" "$T/pub/b"
expect_eq "$(wc -l <"$T/out")" 2 "... prints two lines"
for n in a b; do
        size=$(sed -n 2p "$T/pub/$n/checkpoint")
        check "... $n: its origin, size $size, first time" \
                grep -qE "^$(origin_of "$n" | sed 's/\./\\./g') size $size root [0-9a-f]{64} consistent first time$" "$T/out"
done
check "... and keeps the state" test -s "$ST"
cp "$T/out" "$T/run1"
cp -a "$T/pub/a" "$T/pub/a-first"

for n in a b; do
        for i in 1 2 3; do
                acli "$n" "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" >/dev/null ||
                        fail "sign through $n"
        done
        snapshot "$n" "$T/pub/$n"
done
chmod -R a+rX "$T/pub"
expect_exit 0 "a second run after more signing" cli "$AUDITOR_UID" audit verify --trust "$T/trust" --state "$ST" \
        "$T/pub/b" "$T/pub/a"
for n in a b; do
        old=$(grep "^$(origin_of "$n") " "$T/run1" | awk '{print $3}')
        check "... $n is consistent with the previous run (size $old)" \
                grep -qF "$(origin_of "$n") size $((old + 3)) " "$T/out"
        check "... and says so" grep -qE "^$(origin_of "$n" | sed 's/\./\\./g') .* consistent yes \(previous size $old\)$" "$T/out"
done
expect_exit 0 "--json" cli "$AUDITOR_UID" audit verify --trust "$T/trust" --json "$T/pub/a"
expect_eq "$(jq -r '.verified, .logs[0].origin, .logs[0].consistent_with_previous_size' "$T/out" | tr '\n' ,)" \
        "true,$(origin_of a),null," "... one log, no state"

expect_exit 1 "C's tiles are refused" cli "$AUDITOR_UID" audit verify --trust "$T/trust" --state "$ST" "$T/pub/a" "$T/pub/c"
check "... naming C's origin" grep -qF "FAILED: $T/pub/c: origin \"$(origin_of c)\" is not in the trust file" "$T/err"
check "... A still prints its line" grep -qF "$(origin_of a) size" "$T/out"

cp -a "$T/pub/a" "$T/pub/swap"
cp "$T/pub/b/checkpoint" "$T/pub/swap/checkpoint"
expect_exit 1 "A's tiles under B's checkpoint fail" cli "$AUDITOR_UID" audit verify --trust "$T/trust" "$T/pub/swap"
check "... saying the tiles do not hash to the root" grep -qF "do not hash to the checkpoint's root" "$T/err"
expect_exit 1 "the same origin twice in one run fails" cli "$AUDITOR_UID" audit verify --trust "$T/trust" \
        "$T/pub/a" "$T/pub/a"

# a rolled-back log: A's first snapshot, older than the kept state
cp "$ST" "$T/state-before"
expect_exit 1 "A's older tiles (a rollback) fail against the state" cli "$AUDITOR_UID" audit verify --trust "$T/trust" \
        --state "$ST" "$T/pub/a-first"
check "... naming the previous checkpoint" grep -qF "previous checkpoint" "$T/err"
check "... and the state is unchanged" cmp "$ST" "$T/state-before"
# a rewritten tile
cp -a "$T/pub/a" "$T/pub/a-bad"
tile=$(find "$T/pub/a-bad/tile/0" -type f | head -1)
printf 'x' | dd of="$tile" bs=1 seek=5 conv=notrunc 2>/dev/null
expect_exit 1 "a rewritten tile fails" cli "$AUDITOR_UID" audit verify --trust "$T/trust" --state "$ST" "$T/pub/a-bad"
check "... and the state keeps the last good checkpoint" cmp "$ST" "$T/state-before"
expect_exit 0 "the good tiles still verify against the state" cli "$AUDITOR_UID" audit verify --trust "$T/trust" \
        --state "$ST" "$T/pub/a"
check "... consistent" grep -qF "consistent yes" "$T/out"

# ---- audit verify --trust over exports -------------------------------------------
for n in a b c; do
        acli "$n" "$AUDITOR_UID" audit export >"$T/aud/$n.jsonl" 2>"$T/err" || fail "export of $n: $(cat "$T/err")"
done
chmod a+r "$T"/aud/*.jsonl
expect_exit 0 "audit verify --trust over A's and B's exports" cli "$AUDITOR_UID" audit verify --trust "$T/trust" \
        "$T/aud/a.jsonl" "$T/aud/b.jsonl"
expect_eq "$(grep -c ' consistent first time$' "$T/out")" 2 "... two lines, no state: first time"
expect_exit 1 "C's export is refused" cli "$AUDITOR_UID" audit verify --trust "$T/trust" "$T/aud/c.jsonl"
check "... naming C's origin" grep -qF "origin \"$(origin_of c)\" is not in the trust file" "$T/err"
kept=$(jq -r --arg o "$(origin_of a)" '.checkpoints[$o]' "$ST" | sed -n 2p)
acli a "$RUNNER_UID" sign --principal ci-release --digest "sha256:$(random_digest)" >/dev/null || fail "sign through a"
acli a "$AUDITOR_UID" audit export >"$T/aud/a-nocons.jsonl" 2>"$T/err" || fail "export: $(cat "$T/err")"
chmod a+r "$T/aud/a-nocons.jsonl"
expect_exit 1 "A's newer export without a consistency proof from the kept size fails with --state" \
        cli "$AUDITOR_UID" audit verify --trust "$T/trust" --state "$ST" "$T/aud/a-nocons.jsonl"
check "... saying so" grep -qF "no consistency proof from the previous checkpoint's size $kept" "$T/err"
acli a "$AUDITOR_UID" audit export --previous-size "$kept" >"$T/aud/a-cons.jsonl" 2>"$T/err" || fail "export: $(cat "$T/err")"
chmod a+r "$T/aud/a-cons.jsonl"
expect_exit 0 "A's export with a consistency proof from the kept size, and B's tiles, with --state" \
        cli "$AUDITOR_UID" audit verify --trust "$T/trust" --state "$ST" "$T/aud/a-cons.jsonl" "$T/pub/b"
check "... A consistent with the state (size $kept)" \
        grep -qE "^$(origin_of a | sed 's/\./\\./g') size [0-9]+ root [0-9a-f]{64} consistent yes \(previous size $kept\)$" "$T/out"
check "... B too" grep -qF "$(origin_of b) size" "$T/out"
kept2=$(jq -r --arg o "$(origin_of a)" '.checkpoints[$o]' "$ST" | sed -n 2p)
expect_eq "$kept2" "$(jq -r 'select(.checkpoint) | .tree_size' "$T/aud/a-cons.jsonl")" "... the state keeps the export's checkpoint"
expect_exit 1 "A's older export (a rollback against the state) fails" cli "$AUDITOR_UID" audit verify \
        --trust "$T/trust" --state "$ST" "$T/aud/a.jsonl"
check "... naming the previous checkpoint" grep -qF "previous checkpoint" "$T/err"

for n in "${NAMES[@]}"; do stop_fleet "$n"; done
finish
