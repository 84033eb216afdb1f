#!/bin/bash
# provsign verify against a deploy policy (docs/deploy-policy.md), end to
# end with the real agent: provenance made under simulated GitHub Actions
# and GitLab CI environments, verified with the policy flags and with
# policy files that allow and refuse each field (repository, ref, builder,
# principal, age, receipt, an artifact matching no section); every refusal
# exits 1 and names its field first on stderr; --json lists the checks; a
# malformed policy is exit 5 with FILE:LINE; --metrics-file counts every
# outcome and promtool accepts the file.
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent
PY=/usr/bin/python3
W=$T/w
mkdir -m 1777 "$W"

json_get() {
        $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

expect_exit 0 "audit log-key" cli "$STRANGER_UID" audit log-key
sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$T/out" > "$T/logkey.pem"

# ---- provenance from GitHub Actions (a release branch) and GitLab CI (a tag) ----
mkdir -p "$T/dist" "$T/gl"
head -c 50000 /dev/urandom > "$T/dist/widget.tar.gz"
printf 'checksums\n' > "$T/dist/SHA256SUMS"
head -c 50000 /dev/urandom > "$T/gl/gadget.tar.gz"
chmod -R a+rX "$T/dist" "$T/gl"
gha_env=(GITHUB_ACTIONS=true GITHUB_SERVER_URL=https://github.com GITHUB_REPOSITORY=acme/widget
         GITHUB_SHA=0123456789abcdef0123456789abcdef01234567 GITHUB_REF=refs/heads/release/1.2
         GITHUB_WORKFLOW_REF=acme/widget/.github/workflows/release.yml@refs/heads/release/1.2
         GITHUB_RUN_ID=9001 GITHUB_RUN_ATTEMPT=1 GITHUB_EVENT_NAME=push RUNNER_ENVIRONMENT=github-hosted)
gl_env=(GITLAB_CI=true CI_SERVER_URL=https://gitlab.example.com CI_PROJECT_PATH=acme/gadget
        CI_PROJECT_URL=https://gitlab.example.com/acme/gadget CI_RUNNER_ID=17
        CI_COMMIT_SHA=89abcdef0123456789abcdef0123456789abcdef CI_COMMIT_REF_NAME=v2.0.1 CI_COMMIT_TAG=v2.0.1
        CI_JOB_URL=https://gitlab.example.com/acme/gadget/-/jobs/555 CI_JOB_NAME=release)
GH_BUILDER=https://github.com/actions/runner/github-hosted
GL_BUILDER=https://gitlab.example.com/acme/gadget/-/runners/17
cd "$T" || exit 1
expect_exit 0 "provenance under GitHub Actions" as "$RUNNER_UID" env "${gha_env[@]}" "$PROVSIGN_CLI" provenance \
        --principal ci-release --artifact dist/widget.tar.gz --artifact dist/SHA256SUMS \
        --output "$W/gh.json" --receipt "$W/gh.receipt"
expect_exit 0 "provenance under GitLab CI" as "$RUNNER_UID" env "${gl_env[@]}" "$PROVSIGN_CLI" provenance \
        --principal ci-release --artifact gl/gadget.tar.gz --output "$W/gl.json" --receipt "$W/gl.receipt"
signed_at=$(date +%s)
cd / || exit 1
expect_exit 0 "key bundle" cli "$STRANGER_UID" key bundle -o "$W/bundle.json"

V=("$PROVSIGN_CLI" verify --bundle "$W/bundle.json" --log-key "$T/logkey.pem")
GH=(--receipt "$W/gh.receipt" "$W/gh.json")
GL=(--receipt "$W/gl.receipt" "$W/gl.json")
M=$T/metrics/verify.prom
mkdir -p "$T/metrics"
# every verify below counts into $M; ok/failed tallies kept here too
n_ok=0
declare -A n_failed
vok() { # vok "what" ARGS...: exit 0
        local what=$1
        shift
        expect_exit 0 "$what" "${V[@]}" --metrics-file "$M" "$@"
        n_ok=$((n_ok + 1))
}
vfail() { # vfail FIELD "what" ARGS...: exit 1, stderr names FIELD first
        local field=$1 what=$2
        shift 2
        expect_exit 1 "$what" "${V[@]}" --metrics-file "$M" "$@"
        expect_stderr_prefix "provsign: verify: $field: " "$what: the refusal names $field"
        n_failed[$field]=$((${n_failed[$field]:-0} + 1))
}

# ---- the flags ----
vok "GitHub: every flag allows" --source-uri https://github.com/acme/widget --source-ref 'refs/heads/release/*' \
        --builder-id "$GH_BUILDER" --max-age 1h --require-receipt --principal ci-release "${GH[@]}"
check "the text output lists what was allowed" grep -q '^allowed: *source_ref = refs/heads/release/1.2 (refs/heads/release/\*)$' "$T/out"
check "the text output shows the source" grep -q '^source: *https://github.com/acme/widget refs/heads/release/1.2$' "$T/out"
vok "GitHub: a source URI prefix allows" --source-uri-prefix https://github.com/acme/ "${GH[@]}"
vok "GitHub: one of several refs allows" --source-ref refs/heads/main --source-ref 'refs/heads/release/*' "${GH[@]}"
vfail source_uri "GitHub: another repository" --source-uri https://github.com/acme/gadget "${GH[@]}"
check "... saying what it was and what was allowed" \
        grep -qF 'source_uri: https://github.com/acme/widget is not allowed by the command line (allowed: https://github.com/acme/gadget)' "$T/err"
vfail source_uri "GitHub: a prefix of another owner" --source-uri-prefix https://github.com/evil/ "${GH[@]}"
vfail source_ref "GitHub: a ref not allowed" --source-ref refs/heads/main "${GH[@]}"
check "... naming the ref and the allowed globs" grep -qF 'refs/heads/release/1.2 is not allowed by the command line (allowed: refs/heads/main)' "$T/err"
vfail builder_id "GitHub: another builder" --builder-id https://github.com/actions/runner/self-hosted "${GH[@]}"
vfail receipt "GitHub: --require-receipt without a receipt" --require-receipt "$W/gh.json"
expect_exit 2 "--max-age needs --receipt" "${V[@]}" --max-age 1h "$W/gh.json"
expect_exit 2 "--max-age takes a duration" "${V[@]}" --max-age soon "${GH[@]}"
vok "GitLab: every flag allows" --source-uri https://gitlab.example.com/acme/gadget --source-ref 'refs/tags/v2.*' \
        --builder-id "$GL_BUILDER" --max-age 1d --require-receipt "${GL[@]}"
vfail source_ref "GitLab: a tag outside the allowed glob" --source-ref 'refs/tags/v1.*' "${GL[@]}"
vfail source_uri "GitLab: a GitHub repository" --source-uri https://github.com/acme/gadget "${GL[@]}"
vfail builder_id "GitLab: a GitHub builder" --builder-id "$GH_BUILDER" "${GL[@]}"

# too old: wait (on the clock, not a fixed sleep) until the signature is 2 s old
check "the signatures are more than a second old" wait_for 30 bash -c "[ \$(date +%s) -ge $((signed_at + 3)) ]"
vfail max_age "GitHub: older than --max-age 1s" --max-age 1s "${GH[@]}"
check "... saying how old and the limit" grep -qE 'max_age: [0-9]+\.[0-9]{3}s old is not allowed by the command line \(allowed: at most 1s\)' "$T/err"

# --json: the checks and their outcome, on success and on failure
expect_exit 0 "--json with the flags" "${V[@]}" --json --source-uri https://github.com/acme/widget \
        --source-ref 'refs/heads/release/*' --builder-id "$GH_BUILDER" --require-receipt "${GH[@]}"
expect_eq "$(json_get "$T/out" '[(c["field"], c["ok"]) for c in d["checks"]]')" \
        "[('source_uri', True), ('source_ref', True), ('builder_id', True), ('receipt', True)]" "--json lists every check, all ok"
expect_eq "$(json_get "$T/out" '(d["source"]["uri"], d["source"]["ref"], d["source"]["from"])')" \
        "('https://github.com/acme/widget', 'refs/heads/release/1.2', 'externalParameters.source')" "--json: where the source was read"
expect_exit 1 "--json on a failure" "${V[@]}" --json --source-uri https://github.com/acme/widget \
        --source-ref refs/heads/main --builder-id https://example.com/other "${GH[@]}"
expect_eq "$(json_get "$T/out" '(d["verified"], d["reason"], [(c["field"], c["ok"]) for c in d["checks"]])')" \
        "(False, 'source_ref', [('source_uri', True), ('source_ref', False), ('builder_id', False)])" \
        "--json on a failure: the reason and every check's outcome"
expect_eq "$(json_get "$T/out" '[c["value"] for c in d["checks"] if not c["ok"]]')" \
        "['refs/heads/release/1.2', '$GH_BUILDER']" "--json: each failed check's value"

# ---- policy files ----
# policy NAME <<EOF: a policy file
policy() { cat > "$T/$1.ini"; }
policy allow <<'P'
; deploy policy: first matching section wins
[artifact "dist/*.tar.gz"]
principals = ci-release
source_uri = https://github.com/acme/widget
source_refs = refs/heads/main, refs/heads/release/*
builder_ids = https://github.com/actions/runner/github-hosted
max_age = 30d
require_receipt = yes

[artifact dist/SHA256SUMS]
principals = ci-release
source_uri_prefix = https://github.com/acme/

[artifact "gl/*"]
  principals = ci-release ci-nightly
  source_uri = https://gitlab.example.com/acme/gadget
  source_refs = refs/tags/v*
  builder_ids = https://gitlab.example.com/acme/gadget/-/runners/17
  require_receipt = true
P
vok "GitHub provenance, both artifacts, allowed by the policy" --policy "$T/allow.ini" \
        --artifact "$T/dist/widget.tar.gz" --artifact "$T/dist/SHA256SUMS" "${GH[@]}"
vok "GitHub provenance, every subject (no --artifact), allowed" --policy "$T/allow.ini" "${GH[@]}"
vok "GitLab provenance allowed by the policy" --policy "$T/allow.ini" --artifact "$T/gl/gadget.tar.gz" "${GL[@]}"
expect_exit 0 "--json with a policy" "${V[@]}" --json --policy "$T/allow.ini" "${GH[@]}"
expect_eq "$(json_get "$T/out" '[(c["field"], c["ok"], c["artifact"], c["rule"].rsplit(":",1)[1]) for c in d["checks"]]')" \
        "[('principal', True, 'dist/widget.tar.gz', '2'), ('source_uri', True, 'dist/widget.tar.gz', '2'), ('source_ref', True, 'dist/widget.tar.gz', '2'), ('builder_id', True, 'dist/widget.tar.gz', '2'), ('receipt', True, 'dist/widget.tar.gz', '2'), ('max_age', True, 'dist/widget.tar.gz', '2'), ('principal', True, 'dist/SHA256SUMS', '10'), ('source_uri', True, 'dist/SHA256SUMS', '10')]" \
        "--json: the checks of each artifact's section, with its FILE:LINE"

# each field refused, by a policy that differs in that field only
refuse() { # refuse FIELD "what" SED-EXPR ARGS...
        local field=$1 what=$2 expr=$3
        shift 3
        sed "$expr" "$T/allow.ini" > "$T/refuse-$field.ini"
        vfail "$field" "$what" --policy "$T/refuse-$field.ini" "$@"
}
refuse source_uri "policy: another repository" 's|^source_uri = https://github.com/acme/widget|source_uri = https://github.com/acme/other|' "${GH[@]}"
check "... naming the artifact, the policy line and what was allowed" grep -qF \
        "source_uri: https://github.com/acme/widget is not allowed for dist/widget.tar.gz by $T/refuse-source_uri.ini:2 (allowed: https://github.com/acme/other)" "$T/err"
refuse source_ref "policy: a branch not allowed" 's|^source_refs = refs/heads/main, refs/heads/release/\*|source_refs = refs/heads/main|' "${GH[@]}"
refuse builder_id "policy: another builder" 's|^builder_ids = https://github.com/actions/runner/github-hosted|builder_ids = https://github.com/actions/runner/self-hosted|' "${GH[@]}"
refuse principal "policy: another principal" '0,/^principals = ci-release/s//principals = ci-nightly/' "${GH[@]}"
refuse max_age "policy: too old" 's|^max_age = 30d|max_age = 1s|' "${GH[@]}"
vfail receipt "policy: require_receipt, no receipt given" --policy "$T/allow.ini" "$W/gh.json"
refuse source_ref "policy: GitLab tag not allowed" 's|^  source_refs = refs/tags/v\*|  source_refs = refs/tags/v1.*|' "${GL[@]}"
refuse source_uri "policy: GitLab source by prefix of another group" 's|^  source_uri = .*|  source_uri_prefix = https://gitlab.example.com/other/|' "${GL[@]}"
refuse builder_id "policy: GitLab runner not allowed" 's|/-/runners/17$|/-/runners/18|' "${GL[@]}"
policy nosection <<'P'
[artifact "dist/*.tar.gz"]
principals = ci-release
P
vfail policy "policy: an artifact matching no section" --policy "$T/nosection.ini" "${GH[@]}"
check "... naming the artifact" grep -qF "policy: artifact dist/SHA256SUMS matches no section of $T/nosection.ini" "$T/err"
vok "... the artifact that does match passes alone" --policy "$T/nosection.ini" --artifact "$T/dist/widget.tar.gz" "${GH[@]}"
vfail policy "policy: GitLab's artifact matches no GitHub section" --policy "$T/nosection.ini" "${GL[@]}"
expect_exit 1 "policy + flags: both apply" "${V[@]}" --policy "$T/allow.ini" --source-ref refs/heads/main "${GH[@]}"
expect_stderr_prefix "provsign: verify: source_ref: refs/heads/release/1.2 is not allowed by the command line" "the flags' refusal"

# ---- a malformed policy: exit 5, FILE:LINE ----
bad_policy() { # bad_policy LINE MESSAGE-PART "what" PRINTF-FORMAT [ARGS...]
        local line=$1 msg=$2 what=$3
        shift 3
        # shellcheck disable=SC2059
        printf "$@" > "$T/bad.ini"
        expect_exit 5 "malformed policy: $what" "${V[@]}" --metrics-file "$M" --policy "$T/bad.ini" "${GH[@]}"
        check "... says $T/bad.ini:$line: $msg" grep -qF "provsign: verify: $T/bad.ini:$line: $msg" "$T/err"
        n_error=$((n_error + 1))
}
n_error=0
bad_policy 3 'unknown key "source_branch"' "unknown key" '[artifact "*"]\nprincipals = ci-release\nsource_branch = main\n'
bad_policy 2 'bad duration "a while"' "bad duration" '[artifact "*"]\nmax_age = a while\n'
bad_policy 2 'bad boolean "perhaps"' "bad boolean" '[artifact "*"]\nrequire_receipt = perhaps\n'
bad_policy 3 'duplicate key principals' "duplicate key" '[artifact "*"]\nprincipals = a\nprincipals = b\n'
bad_policy 1 'unknown section [artifacts "*"]' "unknown section" '[artifacts "*"]\nprincipals = a\n'
bad_policy 1 '[artifact "*"] allows everything' "a section that allows everything" '[artifact "*"]\n[artifact "x"]\nprincipals = a\n'
bad_policy 3 'duplicate section' "duplicate section" '[artifact "*"]\nprincipals = a\n[artifact "*"]\nprincipals = b\n'
bad_policy 1 '"principals" outside a section' "a key outside a section" 'principals = a\n'
bad_policy 3 '[artifact "x"] allows everything' "an empty last section" '[artifact "*"]\nprincipals = a\n[artifact "x"]\n'
bad_policy 2 'expected "key = value"' "a line without =" '[artifact "*"]\nprincipals\n'
bad_policy 1 'line too long' "a line too long" '[artifact "%s"]\nprincipals = a\n' "$(head -c 300 /dev/zero | tr '\0' x)"
expect_exit 5 "an unreadable policy" "${V[@]}" --policy "$T/missing.ini" "${GH[@]}"
expect_stderr_prefix "provsign: verify: cannot read policy $T/missing.ini" "an unreadable policy says so"

# ---- the metrics file ----
promtool check metrics < "$M" > "$T/promtool.out" 2>&1
expect_eq "$?" 0 "promtool check metrics accepts the verification metrics ($(head -c 300 "$T/promtool.out"))"
count() { # count OUTCOME REASON
        sed -n "s/^provsign_verifications_total{outcome=\"$1\",reason=\"$2\"} \\([0-9]*\\)\$/\\1/p" "$M"
}
expect_eq "$(count ok none)" "$n_ok" "verifications ok counted: $n_ok"
for f in source_uri source_ref builder_id principal max_age receipt policy; do
        expect_eq "$(count failed "$f")" "${n_failed[$f]}" "verifications failed on $f counted: ${n_failed[$f]}"
done
expect_eq "$(count error local)" "$n_error" "malformed policies counted as errors: $n_error"
expect_eq "$(count failed signature)" 0 "no signature failure counted"
$PY -c 'import base64,json,sys; e=json.load(open(sys.argv[1])); p=base64.b64decode(e["payload"]).replace(b"widget.tar.gz", b"wodget.tar.gz"); e["payload"]=base64.b64encode(p).decode(); json.dump(e, open(sys.argv[2], "w"))' \
        "$W/gh.json" "$T/tampered.json"
expect_exit 1 "a tampered envelope fails" "${V[@]}" --metrics-file "$M" "$T/tampered.json"
expect_eq "$(count failed signature)" 1 "the tamper detection counted as signature"
check "no temporary file is left beside the metrics file" test "$(ls -A "$T/metrics" | sort | tr '\n' ' ')" = "verify.prom verify.prom.lock "
printf 'node_load1 0.5\n' > "$T/other.prom"
expect_exit 0 "a file that is not ours: the verification still verifies" true
expect_exit 5 "... but --metrics-file refuses to overwrite another file" "${V[@]}" --metrics-file "$T/other.prom" "${GH[@]}"
check "... which is unchanged" test "$(cat "$T/other.prom")" = "node_load1 0.5"
# concurrent verifications lose no count (flock around read-add-write)
before=$(count ok none)
pids=()
for i in 1 2 3 4 5 6; do
        "${V[@]}" --metrics-file "$M" "${GH[@]}" >/dev/null 2>&1 &
        pids+=($!)
done
wait "${pids[@]}"
expect_eq "$(count ok none)" "$((before + 6))" "six concurrent verifications add six"

stop_agent
finish
