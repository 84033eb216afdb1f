#!/bin/bash
# The CLI's own command table against its documentation: every verb and
# sub-verb that `provsign --help` and `provsign VERB --help` list (they
# print the tables of client/cli.c, cli-key.c, cli-audit.c, cli-receipt.c)
# has a complete --help, a section in provsign(1) naming each of its
# options, and its place in the bash completion with the same options.
# Needs no agent and no root.
set -uo pipefail
TMPDIR_T=$(mktemp -d)
trap 'rm -rf "$TMPDIR_T"' EXIT
CHECKS=0 FAILURES=0
pass() { CHECKS=$((CHECKS + 1)); echo "ok: $1"; }
fail() { FAILURES=$((FAILURES + 1)); echo "FAIL: $1"; }
MAN=$SRCDIR/packaging/man/provsign.1
COMP=$SRCDIR/packaging/provsign.bash-completion

# table VERB...: the names a --help lists under "Verbs:" or "Subcommands:".
table() { "$PROVSIGN_CLI" "$@" --help | sed -n '/^\(Verbs\|Subcommands\):/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p'; }
# options VERB...: the long options a --help lists.
options() { "$PROVSIGN_CLI" "$@" --help | grep -oE -- '^ +(-[a-zA-Z], )?--[a-z][a-z-]*' | grep -oE -- '--[a-z-]+' | sort -u; }
# The man page without roff escapes.
MANTXT=$(sed 's/\\//g' "$MAN")
# man_section "VERB [SUB]": its .SS line and the text under it.
man_section() {
        awk -v v="$1" '
                /^\.S[SH] / { on = (index($0, ".SS \"" v " ") == 1 || $0 == ".SS \"" v "\""); if (on) print; next }
                on { print }' <<<"$MANTXT"
}
# shellcheck disable=SC1090
. "$COMP" 2>/dev/null || true
if ! declare -F _provsign_options >/dev/null; then
        fail "the bash completion defines _provsign_options"
        exit 1
fi

verbs=$(table)
[ -n "$verbs" ] && pass "provsign --help lists verbs: $(echo $verbs)" || fail "provsign --help lists no verbs"
for o in $(options); do
        if grep -q -- "$o" <<<"$MANTXT"; then pass "provsign(1) documents global option $o"
        else fail "provsign(1) does not document global option $o"; fi
        case " $_provsign_global_opts " in
        *" $o "*) pass "the completion offers global option $o" ;;
        *) fail "the completion lacks global option $o" ;;
        esac
done
for v in $verbs; do
        case " $_provsign_verbs " in
        *" $v "*) pass "the completion knows verb $v" ;;
        *) fail "the completion lacks verb $v" ;;
        esac
        subs=$(table "$v")
        comp_subs=" $(_provsign_subcommands "$v") "
        names=$v
        if [ -n "$subs" ]; then
                names=
                for s in $subs; do
                        names="$names $v:$s"
                        case "$comp_subs" in
                        *" $s "*) pass "the completion knows $v $s" ;;
                        *) fail "the completion lacks $v $s" ;;
                        esac
                done
        fi
        for n in $names; do
                cmd=${n/:/ }
                # shellcheck disable=SC2086
                if "$PROVSIGN_CLI" $cmd --help >"$TMPDIR_T/help" 2>&1 && head -1 "$TMPDIR_T/help" | grep -q "^Usage: provsign $cmd\b"; then
                        pass "provsign $cmd --help prints its usage"
                else
                        fail "provsign $cmd --help: $(head -1 "$TMPDIR_T/help")"
                fi
                section=$(man_section "$cmd")
                if [ -n "$section" ]; then pass "provsign(1) has a section for $cmd"; else fail "provsign(1) has no section for $cmd"; fi
                comp_opts=" $(_provsign_options "$cmd") "
                # shellcheck disable=SC2086
                for o in $(options $cmd); do
                        [ "$o" = --help ] && continue
                        if grep -q -- "$o" <<<"$section"; then pass "provsign(1) $cmd names $o"
                        else fail "provsign(1) $cmd does not name $o"; fi
                        case "$comp_opts" in
                        *" $o "*) pass "the completion offers $cmd $o" ;;
                        *) fail "the completion lacks $cmd $o" ;;
                        esac
                done
        done
done
echo "$CHECKS checks passed, $FAILURES failed"
[ "$FAILURES" = 0 ]
