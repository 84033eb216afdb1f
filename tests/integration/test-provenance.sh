#!/bin/bash
# DSSE envelopes, provenance and offline verify, end to end with the real
# agent: `provsign attest` / `provenance` / the libprovsign example sign;
# the envelopes are accepted by verifiers nobody here wrote — openssl over
# PAE bytes this script builds itself, and the sigstore JavaScript verifier
# (@sigstore/verify 3.x, installed with `npm ci` from the committed lockfile
# in tests/interop/sigstore; no network or no npm is a failure, not a skip);
# `provsign verify` round trips, and each failure case of the DSSE issue
# fails with its own message: tampered payload, changed payloadType, wrong
# key, bundle not signed by the log key, revoked key without receipt,
# revoked key whose receipt is after compromised_since, artifact not among
# the subjects. `provenance` under a simulated GitHub Actions environment
# has the expected fields and none of the secrets planted in it.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent
PY=/usr/bin/python3
# clients write their outputs here
W=$T/w
mkdir -m 1777 "$W"
not() { ! "$@"; }

# json_get FILE EXPR: a Python expression over the JSON document d.
json_get() {
        $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}
# payload_of ENVELOPE OUT: the decoded payload, by Python's base64.
payload_of() {
        $PY -c 'import json,sys,base64; e=json.load(open(sys.argv[1])); open(sys.argv[2],"wb").write(base64.b64decode(e["payload"], validate=True))' "$1" "$2"
}
# pae TYPE PAYLOAD-FILE OUT: DSSEv1 SP len(type) SP type SP len(body) SP body,
# written here from the DSSE spec, not by provsign.
pae() {
        printf 'DSSEv1 %d %s %d ' "$(printf '%s' "$1" | wc -c)" "$1" "$(stat -c %s "$2")" > "$3"
        cat "$2" >> "$3"
}
# openssl_verify ENVELOPE PEM DGST: the envelope's signature over its PAE.
openssl_verify() {
        local d
        d=$(mktemp -d "$T/ov-XXXXXX")
        payload_of "$1" "$d/payload" || return 1
        pae "$(json_get "$1" 'd["payloadType"]')" "$d/payload" "$d/pae"
        json_get "$1" 'd["signatures"][0]["sig"]' | base64 -d > "$d/sig"
        openssl dgst "-$3" -verify "$2" -signature "$d/sig" "$d/pae" >/dev/null
}
pubkey() { # pubkey PRINCIPAL OUT
        cli "$STRANGER_UID" key pubkey --principal "$1" > "$2"
}
keyid_of_pem() {
        openssl pkey -pubin -in "$1" -outform DER | sha256sum | cut -c1-64
}

# ---- keys ----
expect_exit 0 "audit log-key" cli "$STRANGER_UID" audit log-key
sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$T/out" > "$T/logkey.pem"
pubkey ci-release "$T/release.pem"
pubkey ci-nightly "$T/nightly.pem"
pubkey ci-rsa "$T/rsa.pem"
release_id=$(keyid_of_pem "$T/release.pem")
nightly_id=$(keyid_of_pem "$T/nightly.pem")

# ---- attest ----
printf 'hello, provenance\n' > "$T/note.txt"
chmod 0644 "$T/note.txt"
expect_exit 2 "attest without --type" cli "$RUNNER_UID" attest --principal ci-release "$T/note.txt"
expect_stderr_prefix "provsign attest: missing --type" "attest names the missing --type"
expect_exit 3 "attest for a principal the caller is not in" cli "$STRANGER_UID" attest --principal ci-release --type text/plain "$T/note.txt"
expect_stderr_prefix "PERMISSION_DENIED" "the refusal is the agent's"
expect_exit 0 "attest signs a file" cli "$RUNNER_UID" attest --principal ci-release --type text/plain \
        --receipt "$W/att.receipt" "$T/note.txt"
cp "$T/out" "$T/att.json"
expect_eq "$(json_get "$T/att.json" 'sorted(d)')" "['payload', 'payloadType', 'signatures']" "envelope has payload, payloadType, signatures"
expect_eq "$(json_get "$T/att.json" 'd["payloadType"]')" "text/plain" "payloadType as given"
expect_eq "$(json_get "$T/att.json" 'd["signatures"][0]["keyid"]')" "$release_id" "keyid is the signing key's id"
payload_of "$T/att.json" "$T/att.payload"
check "the payload is the file, byte for byte" cmp -s "$T/att.payload" "$T/note.txt"
check "openssl verifies the attest envelope over the PAE (SHA-256, P-256)" openssl_verify "$T/att.json" "$T/release.pem" sha256
# the receipt logged the PAE digest, not the payload's
pae text/plain "$T/note.txt" "$T/att.pae"
pae_digest=$(sha256sum "$T/att.pae" | cut -c1-64)
expect_exit 0 "the attest receipt verifies" cli "$RUNNER_UID" receipt verify --log-key "$T/logkey.pem" --json "$W/att.receipt"
expect_eq "$(json_get "$T/out" 'd["digest"]')" "sha256:$pae_digest" "the log holds the digest of the PAE"
check "the payload never reached the agent's log" bash -c '! grep -rq "hello, provenance" "$1"' _ "$T/state"
# openssl pkeyutl over the PAE digest too
check "openssl pkeyutl verifies the signature over SHA-256(PAE)" \
        verify_sig "$T/release.pem" "$pae_digest" "$(json_get "$T/att.json" 'd["signatures"][0]["sig"]')"

# P-384 and RSA keys
expect_exit 0 "attest with a P-384 key" cli "$RUNNER2_UID" attest --principal ci-nightly --type text/plain "$T/note.txt"
cp "$T/out" "$T/att384.json"
check "openssl verifies the P-384 envelope with SHA-384 over the PAE" openssl_verify "$T/att384.json" "$T/nightly.pem" sha384
check "... and not with SHA-256" not openssl_verify "$T/att384.json" "$T/nightly.pem" sha256
expect_exit 0 "attest with an RSA-3072 key" cli "$RUNNER_UID" attest --principal ci-rsa --type text/plain \
        --receipt "$W/rsa.receipt" "$T/note.txt"
cp "$T/out" "$T/attrsa.json"
check "openssl verifies the RSA envelope (PKCS#1 v1.5, SHA-256) over the PAE" openssl_verify "$T/attrsa.json" "$T/rsa.pem" sha256

# ---- the libprovsign example ----
printf '{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"note.txt","digest":{"sha256":"%s"}}],"predicateType":"https://example.com/test/v1","predicate":{}}' \
        "$(sha256sum "$T/note.txt" | cut -c1-64)" > "$T/stmt.json"
chmod 0644 "$T/stmt.json"
expect_exit 0 "the libprovsign DSSE example signs a statement" as "$RUNNER_UID" "$PROVSIGN_EXAMPLE_SIGN_STATEMENT" ci-release "$T/stmt.json"
head -1 "$T/out" > "$T/example.json"
check "the example prints the log entry" grep -q '^logged as entry [0-9]' "$T/out"
check "openssl verifies the example's envelope" openssl_verify "$T/example.json" "$T/release.pem" sha256

# ---- provenance under a simulated GitHub Actions run ----
mkdir -p "$T/dist"
head -c 100000 /dev/urandom > "$T/dist/widget.tar.gz"
printf 'checksums\n' > "$T/dist/SHA256SUMS"
chmod -R a+rX "$T/dist"
SECRETS=(ghs_PLANTEDgithubTOKEN0001 PLANTED-runtime-token-0002 PLANTED-oidc-request-0003
         PLANTEDawsSECRET0004 PLANTED-npm-0005 PLANTEDpassw0rd0006 glpat-PLANTED0007)
gha_env=(GITHUB_ACTIONS=true GITHUB_SERVER_URL=https://github.com GITHUB_REPOSITORY=acme/widget
         GITHUB_REPOSITORY_ID=4242 GITHUB_REPOSITORY_OWNER_ID=77
         GITHUB_SHA=0123456789abcdef0123456789abcdef01234567 GITHUB_REF=refs/heads/main
         GITHUB_WORKFLOW_REF=acme/widget/.github/workflows/release.yml@refs/heads/main
         GITHUB_RUN_ID=9001 GITHUB_RUN_ATTEMPT=2 GITHUB_EVENT_NAME=push RUNNER_ENVIRONMENT=self-hosted
         "GITHUB_TOKEN=${SECRETS[0]}" "ACTIONS_RUNTIME_TOKEN=${SECRETS[1]}"
         "ACTIONS_ID_TOKEN_REQUEST_TOKEN=${SECRETS[2]}" "AWS_SECRET_ACCESS_KEY=${SECRETS[3]}"
         "NPM_TOKEN=${SECRETS[4]}" "DEPLOY_PASSWORD=${SECRETS[5]}" "GITLAB_API=${SECRETS[6]}")
cd "$T" || exit 1
expect_exit 0 "provenance in a GitHub Actions environment" as "$RUNNER_UID" env "${gha_env[@]}" \
        "$PROVSIGN_CLI" provenance --principal ci-release --artifact dist/widget.tar.gz --artifact ./dist/SHA256SUMS \
        --env GITLAB_API --output "$W/prov.json" --receipt "$W/prov.receipt"
cp "$T/err" "$T/prov.err"
payload_of "$W/prov.json" "$T/prov.payload"
expect_eq "$(json_get "$W/prov.json" 'd["payloadType"]')" "application/vnd.in-toto+json" "provenance payloadType"
stmt() { json_get "$T/prov.payload" "$1"; }
expect_eq "$(stmt 'd["_type"]')" "https://in-toto.io/Statement/v1" "in-toto Statement v1"
expect_eq "$(stmt 'd["predicateType"]')" "https://slsa.dev/provenance/v1" "SLSA Provenance v1 predicate"
expect_eq "$(stmt '[s["name"] for s in d["subject"]]')" "['dist/widget.tar.gz', 'dist/SHA256SUMS']" "subject names"
expect_eq "$(stmt 'd["subject"][0]["digest"]["sha256"]')" "$(sha256sum "$T/dist/widget.tar.gz" | cut -c1-64)" "subject SHA-256"
expect_eq "$(stmt 'd["subject"][1]["digest"]["sha256"]')" "$(sha256sum "$T/dist/SHA256SUMS" | cut -c1-64)" "second subject SHA-256"
expect_eq "$(stmt 'd["predicate"]["buildDefinition"]["buildType"]')" "https://actions.github.io/buildtypes/workflow/v1" "GitHub buildType"
expect_eq "$(stmt 'd["predicate"]["runDetails"]["builder"]["id"]')" "https://github.com/actions/runner/self-hosted" "builder id"
expect_eq "$(stmt 'd["predicate"]["buildDefinition"]["externalParameters"]["workflow"]')" \
        "{'ref': 'refs/heads/main', 'repository': 'https://github.com/acme/widget', 'path': '.github/workflows/release.yml'}" "workflow"
expect_eq "$(stmt 'd["predicate"]["buildDefinition"]["resolvedDependencies"]')" \
        "[{'uri': 'git+https://github.com/acme/widget@refs/heads/main', 'digest': {'gitCommit': '0123456789abcdef0123456789abcdef01234567'}}]" "source repository and commit"
expect_eq "$(stmt 'd["predicate"]["runDetails"]["metadata"]["invocationId"]')" \
        "https://github.com/acme/widget/actions/runs/9001/attempts/2" "invocation id"
expect_eq "$(stmt 'd["predicate"]["buildDefinition"]["internalParameters"]["github"]["event_name"]')" "push" "event name"
check "a planted token in an --env variable is dropped with a warning" grep -q "not recording GITLAB_API" "$T/prov.err"
for s in "${SECRETS[@]}"; do
        check "secret $s is in no output" bash -c '! grep -rqF -- "$1" "$2/w/prov.json" "$2/prov.payload" "$2/w/prov.receipt" "$2/prov.err" "$2/state"' _ "$s" "$T"
done
expect_exit 2 "--env refuses a secret-looking name" as "$RUNNER_UID" env "${gha_env[@]}" \
        "$PROVSIGN_CLI" provenance --principal ci-release --artifact dist/SHA256SUMS --env GITHUB_TOKEN
expect_exit 2 "provenance without CI needs --builder-id" cli "$RUNNER_UID" provenance --principal ci-release --artifact dist/SHA256SUMS
check "openssl verifies the provenance envelope" openssl_verify "$W/prov.json" "$T/release.pem" sha256
# GitLab CI: CI_REPOSITORY_URL carries the job token in its user-info
gl_env=(GITLAB_CI=true CI_SERVER_URL=https://gitlab.example.com CI_PROJECT_PATH=acme/widget
        CI_PROJECT_URL=https://gitlab.example.com/acme/widget CI_RUNNER_ID=17 CI_COMMIT_SHA=89abcdef0123456789abcdef0123456789abcdef
        CI_COMMIT_REF_NAME=main CI_JOB_URL=https://gitlab.example.com/acme/widget/-/jobs/555 CI_CONFIG_PATH=.gitlab-ci.yml
        CI_JOB_NAME=release CI_PIPELINE_SOURCE=push CI_PROJECT_ID=3 CI_PIPELINE_ID=44 CI_JOB_ID=555
        "CI_JOB_TOKEN=${SECRETS[6]}" "CI_REPOSITORY_URL=https://gitlab-ci-token:${SECRETS[6]}@gitlab.example.com/acme/widget.git")
expect_exit 0 "provenance in a GitLab CI environment" as "$RUNNER_UID" env "${gl_env[@]}" \
        "$PROVSIGN_CLI" provenance --principal ci-release --artifact dist/SHA256SUMS --output "$W/gl.json"
cp "$T/err" "$T/gl.err"
payload_of "$W/gl.json" "$T/gl.payload"
gl() { json_get "$T/gl.payload" "$1"; }
expect_eq "$(gl 'd["predicate"]["runDetails"]["builder"]["id"]')" "https://gitlab.example.com/acme/widget/-/runners/17" "GitLab builder id"
expect_eq "$(gl 'd["predicate"]["buildDefinition"]["buildType"]')" "urn:provsign:buildtype:gitlab-ci:v1" "GitLab buildType"
expect_eq "$(gl 'd["predicate"]["buildDefinition"]["resolvedDependencies"][0]')" \
        "{'uri': 'git+https://gitlab.example.com/acme/widget@refs/heads/main', 'digest': {'gitCommit': '89abcdef0123456789abcdef0123456789abcdef'}}" "GitLab source"
expect_eq "$(gl 'd["predicate"]["runDetails"]["metadata"]["invocationId"]')" "https://gitlab.example.com/acme/widget/-/jobs/555" "GitLab invocation id"
check "the GitLab job token is in no output" bash -c '! grep -rqF -- "$1" "$2/w/gl.json" "$2/gl.payload" "$2/gl.err"' _ "${SECRETS[6]}" "$T"
# the openssl recipe of docs/runners.md, verbatim but for where the key comes from
readme_recipe() (
        cd "$(mktemp -d "$T/rr-XXXXXX")" || exit 1
        cp "$1" widget.intoto.json
        type=$(jq -r .payloadType widget.intoto.json)
        jq -r .payload widget.intoto.json | base64 -d > payload
        { printf 'DSSEv1 %d %s %d ' "${#type}" "$type" "$(stat -c %s payload)"; cat payload; } > pae
        jq -r '.signatures[0].sig' widget.intoto.json | base64 -d > sig.der
        cp "$2" key.pem
        openssl dgst -sha256 -verify key.pem -signature sig.der pae >/dev/null
)
check "the openssl recipe of docs/runners.md verifies the provenance envelope" readme_recipe "$W/prov.json" "$T/release.pem"
# the artifact digests went to the log as annotations
expect_exit 0 "provenance receipt verifies" cli "$RUNNER_UID" receipt verify --log-key "$T/logkey.pem" "$W/prov.receipt"
check "the log entry carries artifact:NAME=sha256:HEX annotations" $PY - "$W/prov.receipt" "$(sha256sum "$T/dist/widget.tar.gz" | cut -c1-64)" <<'PY'
import base64, json, sys
leaf = base64.b64decode(json.load(open(sys.argv[1]))["receipt"]["leaf"])
want = b"artifact:dist/widget.tar.gz" 
assert want in leaf and ("sha256:" + sys.argv[2]).encode() in leaf, leaf
PY
cd / || exit 1

# ---- the sigstore JavaScript verifier ----
# Its node_modules come from `npm ci` of the committed lockfile, once per
# lockfile: a cache keyed by the lockfile's SHA-256, outside the build dir
# (PROVSIGN_TEST_CACHE; tests/run-suite gives its two builds one fresh cache,
# so a suite run installs once).
SIG=$T/sigstore
mkdir -p "$SIG"
cp "$SRCDIR/tests/interop/sigstore/verify-envelope.js" "$SIG/"
sigstore_modules() {
        local lock=$SRCDIR/tests/interop/sigstore/package-lock.json
        local dir
        dir=${PROVSIGN_TEST_CACHE:-/var/tmp/provsign-test-cache}/sigstore-$(sha256sum "$lock" | cut -c1-16)
        if [ ! -e "$dir/complete" ]; then
                local tmp
                mkdir -p "${dir%/*}" && tmp=$(mktemp -d "$dir.XXXXXX") || return 1
                cp "$SRCDIR/tests/interop/sigstore/package.json" "$lock" "$tmp/"
                (cd "$tmp" && npm ci --no-audit --no-fund --ignore-scripts) >"$T/npm.log" 2>&1 &&
                        touch "$tmp/complete" || { rm -rf "$tmp"; return 1; }
                # another run may have finished first: keep one, atomically
                mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
        fi
        ln -s "$dir/node_modules" "$SIG/node_modules"
}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        fail "node and npm are needed for the sigstore verifier (Node 20)"
elif ! sigstore_modules; then
        fail "npm ci of @sigstore/verify failed (registry unreachable?): $(tail -5 "$T/npm.log" 2>/dev/null)"
else
        sigver=$(node -p 'require(process.argv[1] + "/node_modules/@sigstore/verify/package.json").version' "$SIG")
        check "@sigstore/verify is the pinned 3.x ($sigver)" test "${sigver%%.*}" = 3
        check "@sigstore/verify $sigver accepts the attest envelope (P-256)" \
                node "$SIG/verify-envelope.js" "$T/att.json" "$T/release.pem"
        check "@sigstore/verify $sigver accepts the provenance envelope" \
                node "$SIG/verify-envelope.js" "$W/prov.json" "$T/release.pem"
        check "@sigstore/verify $sigver accepts the RSA-3072 envelope" \
                node "$SIG/verify-envelope.js" "$T/attrsa.json" "$T/rsa.pem"
        check "@sigstore/verify $sigver accepts the libprovsign example's envelope" \
                node "$SIG/verify-envelope.js" "$T/example.json" "$T/release.pem"
        $PY -c 'import json,sys,base64; e=json.load(open(sys.argv[1])); p=bytearray(base64.b64decode(e["payload"])); p[5]^=1; e["payload"]=base64.b64encode(bytes(p)).decode(); json.dump(e,open(sys.argv[2],"w"))' \
                "$W/prov.json" "$T/tampered-js.json"
        check "@sigstore/verify rejects a tampered payload" bash -c '! node "$1" "$2" "$3" 2>/dev/null' _ \
                "$SIG/verify-envelope.js" "$T/tampered-js.json" "$T/release.pem"
        check "@sigstore/verify rejects another key" bash -c '! node "$1" "$2" "$3" 2>/dev/null' _ \
                "$SIG/verify-envelope.js" "$W/prov.json" "$T/rsa.pem"
fi

# ---- provsign verify: round trips ----
expect_exit 0 "key bundle (any caller)" cli "$STRANGER_UID" key bundle -o "$W/bundle.json"
expect_exit 0 "verify the provenance with receipt and artifacts" "$PROVSIGN_CLI" verify --bundle "$W/bundle.json" \
        --log-key "$T/logkey.pem" --receipt "$W/prov.receipt" --artifact "$T/dist/widget.tar.gz" \
        --artifact "$T/dist/SHA256SUMS" "$W/prov.json"
cp "$T/out" "$T/verify.out"
check "verify prints the principal" grep -q '^principal: *ci-release$' "$T/verify.out"
bsize=$(json_get "$W/bundle.json" "__import__('json').loads(__import__('base64').b64decode(d['payload']))['log_size']")
check "verify prints the bundle's issue time and log size" grep -qE "^bundle: *issued [0-9T:.-]+Z at log size $bsize\$" "$T/verify.out"

# ---- bundle freshness: a bundle must have seen the signature ----
# A bundle fetched now, then a signature made after it: with its receipt,
# the old bundle is refused (it may predate a revocation); a fresh one is
# taken.
expect_exit 0 "a bundle fetched before the next signature" cli "$STRANGER_UID" key bundle -o "$W/old-bundle.json"
expect_exit 0 "attest after the bundle" cli "$RUNNER_UID" attest --principal ci-release --type text/plain \
        --output "$W/late.json" --receipt "$W/late.receipt" "$T/note.txt"
expect_exit 1 "the older bundle with a later receipt is refused" "$PROVSIGN_CLI" verify --bundle "$W/old-bundle.json" \
        --log-key "$T/logkey.pem" --receipt "$W/late.receipt" "$W/late.json"
expect_stderr_prefix "provsign: verify: key bundle older than the receipt:" "... naming why"
expect_exit 0 "without the receipt the older bundle still verifies an active key" "$PROVSIGN_CLI" verify \
        --bundle "$W/old-bundle.json" --log-key "$T/logkey.pem" "$W/late.json"
expect_exit 0 "a fresh bundle" cli "$STRANGER_UID" key bundle -o "$W/new-bundle.json"
expect_exit 0 "a fresh bundle with the receipt verifies" "$PROVSIGN_CLI" verify --bundle "$W/new-bundle.json" \
        --log-key "$T/logkey.pem" --receipt "$W/late.receipt" "$W/late.json"
nsize=$(json_get "$W/new-bundle.json" "__import__('json').loads(__import__('base64').b64decode(d['payload']))['log_size']")
expect_exit 0 "--min-log-size at the bundle's size" "$PROVSIGN_CLI" verify --bundle "$W/new-bundle.json" \
        --log-key "$T/logkey.pem" --min-log-size "$nsize" "$W/late.json"
expect_exit 1 "--min-log-size past the bundle's size" "$PROVSIGN_CLI" verify --bundle "$W/new-bundle.json" \
        --log-key "$T/logkey.pem" --min-log-size $((nsize + 1)) "$W/late.json"
expect_stderr_prefix "provsign: verify: key bundle too old:" "... naming why"
expect_exit 0 "--bundle-max-age 1h" "$PROVSIGN_CLI" verify --bundle "$W/new-bundle.json" --log-key "$T/logkey.pem" \
        --bundle-max-age 1h "$W/late.json"
issued=$(json_get "$W/new-bundle.json" "int(__import__('datetime').datetime.fromisoformat(__import__('json').loads(__import__('base64').b64decode(d['payload']))['issued'].replace('Z', '+00:00')).timestamp())")
older_than_2s() { [ $(($(date +%s) - issued)) -ge 3 ]; }
check "the bundle is 3 s old" wait_for 10 older_than_2s
expect_exit 1 "--bundle-max-age 2s refuses it" "$PROVSIGN_CLI" verify --bundle "$W/new-bundle.json" \
        --log-key "$T/logkey.pem" --bundle-max-age 2s "$W/late.json"
expect_stderr_prefix "provsign: verify: key bundle too old:" "... naming why"
expect_exit 0 "--json names the bundle's log size" "$PROVSIGN_CLI" verify --json --bundle "$W/new-bundle.json" \
        --log-key "$T/logkey.pem" "$W/late.json"
expect_eq "$(json_get "$T/out" "d['bundle_log_size']")" "$nsize" "verify --json: bundle_log_size"
expect_exit 2 "--bundle-max-age 0s is a usage error" "$PROVSIGN_CLI" verify --bundle "$W/new-bundle.json" \
        --log-key "$T/logkey.pem" --bundle-max-age 0s "$W/late.json"
check "verify prints the keyid" grep -q "^keyid: *$release_id\$" "$T/verify.out"
check "verify prints the subjects" grep -q '^subject: *dist/widget.tar.gz sha256:' "$T/verify.out"
check "verify prints the builder" grep -q '^builder: *https://github.com/actions/runner/self-hosted$' "$T/verify.out"
check "verify prints the log time" grep -Eq '^log time: *20[0-9-]+T[0-9:.]+Z \(entry [0-9]+ of [0-9]+, log provsign.test/it\)$' "$T/verify.out"
expect_exit 0 "verify --json" "$PROVSIGN_CLI" verify --json --bundle "$W/bundle.json" --log-key "$T/logkey.pem" \
        --receipt "$W/prov.receipt" "$W/prov.json"
expect_eq "$(json_get "$T/out" '(d["verified"], d["principal"], d["keyid"], d["state"])')" "(True, 'ci-release', '$release_id', 'active')" "verify --json facts"
expect_exit 0 "verify without a receipt (active key)" "$PROVSIGN_CLI" verify --bundle "$W/bundle.json" --log-key "$T/logkey.pem" "$T/att.json"
check "without a receipt the log time is not claimed" grep -q '^log time: *not proven' "$T/out"
expect_exit 0 "verify the P-384 envelope" "$PROVSIGN_CLI" verify --bundle "$W/bundle.json" --log-key "$T/logkey.pem" --principal ci-nightly "$T/att384.json"
expect_exit 0 "verify the libprovsign example's envelope" "$PROVSIGN_CLI" verify --bundle "$W/bundle.json" --log-key "$T/logkey.pem" "$T/example.json"

# ---- each failure with its own message ----
# edit ENVELOPE OUT PYTHON: e is the envelope, p its payload (bytes)
edit() {
        $PY -c 'import json,sys,base64
e=json.load(open(sys.argv[1])); p=base64.b64decode(e["payload"])
exec(sys.argv[3])
e["payload"]=base64.b64encode(p).decode(); json.dump(e,open(sys.argv[2],"w"))' "$@"
}
V=("$PROVSIGN_CLI" verify --bundle "$W/bundle.json" --log-key "$T/logkey.pem")
edit "$W/prov.json" "$T/bad-payload.json" 'p=p.replace(b"widget.tar.gz",b"gadget.tar.gz")'
expect_exit 1 "tampered payload" "${V[@]}" --receipt "$W/prov.receipt" "$T/bad-payload.json"
expect_stderr_prefix "provsign: verify: bad signature: the payload was changed" "tampered payload: its own message"
edit "$W/prov.json" "$T/bad-type.json" 'e["payloadType"]="application/json"'
expect_exit 1 "changed payloadType" "${V[@]}" --receipt "$W/prov.receipt" "$T/bad-type.json"
expect_stderr_prefix "provsign: verify: bad signature: the payloadType was changed" "changed payloadType: its own message"
edit "$W/prov.json" "$T/bad-key.json" "e['signatures'][0]['keyid']='$nightly_id'"
expect_exit 1 "wrong key" "${V[@]}" --receipt "$W/prov.receipt" "$T/bad-key.json"
expect_stderr_prefix "provsign: verify: bad signature: wrong key" "wrong key: its own message"
expect_exit 1 "another principal's key" "${V[@]}" --principal ci-nightly "$W/prov.json"
expect_stderr_prefix "provsign: verify: key of another principal:" "wrong principal: its own message"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null | openssl pkey -pubout > "$T/not-the-log-key.pem"
expect_exit 1 "bundle checked against another log key" "$PROVSIGN_CLI" verify --bundle "$W/bundle.json" \
        --log-key "$T/not-the-log-key.pem" "$W/prov.json"
expect_stderr_prefix "provsign: verify: key bundle not signed by the log key:" "bundle not signed by the log key: its own message"
edit "$W/bundle.json" "$T/bundle-tampered.json" 'p=p.replace(b"\"ci-nightly\"",b"\"ci-nightlY\"")'
expect_exit 1 "tampered bundle" "$PROVSIGN_CLI" verify --bundle "$T/bundle-tampered.json" --log-key "$T/logkey.pem" "$W/prov.json"
expect_stderr_prefix "provsign: verify: key bundle not signed by the log key:" "tampered bundle fails"
printf 'not in any build\n' > "$T/stranger.bin"
expect_exit 1 "artifact not among the subjects" "${V[@]}" --artifact "$T/stranger.bin" "$W/prov.json"
expect_stderr_prefix "provsign: verify: artifact not among the subjects:" "artifact not among the subjects: its own message"

# ---- revocation: receipts decide ----
# ci-rsa's key signed attrsa.json before now; revoked with compromise "now",
# the receipt proves the signature older. ci-release's key signed prov.json;
# revoked as compromised since an hour ago, the receipt proves it younger.
expect_exit 0 "operator lists keys" cli "$OPERATOR_UID" key list --json
rsa_id=$(keyid_of_pem "$T/rsa.pem")
expect_exit 0 "revoke the RSA key (compromised since now)" cli "$OPERATOR_UID" key revoke --key "$rsa_id" --reason "test: retired hardware"
hour_ago=$(date -u -d '1 hour ago' +%Y-%m-%dT%H:%M:%SZ)
expect_exit 0 "revoke ci-release's key, compromised since an hour ago" cli "$OPERATOR_UID" key revoke --key "$release_id" \
        --reason "test: leaked" --compromised-since "$hour_ago"
expect_exit 0 "key bundle after revocations" cli "$STRANGER_UID" key bundle -o "$W/bundle2.json"
V2=("$PROVSIGN_CLI" verify --bundle "$W/bundle2.json" --log-key "$T/logkey.pem")
expect_exit 0 "revoked key, receipt before compromised_since: valid" "${V2[@]}" --receipt "$W/rsa.receipt" "$T/attrsa.json"
check "verify says the key is revoked and the signature older" grep -q 'revoked (compromised since .*; signed before)' "$T/out"
expect_exit 1 "revoked key without receipt" "${V2[@]}" "$T/attrsa.json"
expect_stderr_prefix "provsign: verify: revoked key without receipt:" "revoked key without receipt: its own message"
expect_exit 1 "revoked key, receipt after compromised_since" "${V2[@]}" --receipt "$W/prov.receipt" "$W/prov.json"
expect_stderr_prefix "provsign: verify: signed after the key's compromise:" "receipt after compromised_since: its own message"
expect_exit 1 "a receipt of another signature" "${V2[@]}" --receipt "$W/att.receipt" "$T/attrsa.json"
expect_stderr_prefix "provsign: verify: invalid receipt:" "another signature's receipt: its own message"

stop_agent
finish
