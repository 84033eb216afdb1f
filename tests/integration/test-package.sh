#!/bin/bash
# The Debian packages, built, linted, unpacked into a scratch root (never
# installed on this machine) and used: the packaged agent, socket-activated,
# signs through the packaged CLI and openssl verifies the signature.
#
#   1. packaging/build-deb into a temp dir (a minute or two), lintian: no errors
#   2. the packages' contents, owners and modes; the maintainer scripts
#   3. systemd-analyze verify on the installed units, and their exposure
#      (systemd-analyze security) at most 2.0
#   4. sysusers and tmpfiles applied to a copy of /etc: the users exist, and
#      the packaged config passes the agent's config check with them
#   5. provsign-provision-token on a private SoftHSM2 config
#   6. the packaged agent under systemd-socket-activate, with the packaged
#      config adapted and the PIN in $CREDENTIALS_DIRECTORY, signs for the
#      packaged CLI (LD_LIBRARY_PATH to the packaged libprovsign)
#   7. the bash completion knows every verb, subcommand and option of the CLI
#
# A sanitizer build (PROVSIGN_AGENT linked with ASan) runs only 4 and 7 on
# the source tree's packaging files with that build's agent and CLI: the
# packages are built by dpkg-buildpackage with Debian's flags whatever the
# build, so building them twice would check nothing new.
# PROVSIGN_TEST_PACKAGE=full or quick forces either.
. "$SRCDIR/tests/lib/common.sh"
setup_test

mode=${PROVSIGN_TEST_PACKAGE:-auto}
if [ "$mode" = auto ]; then
        mode=full
        ldd "$PROVSIGN_AGENT" 2>/dev/null | grep -E 'lib(a|ub)san' >/dev/null && mode=quick
fi
echo "mode: $mode"
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)

# sysusers_and_config ROOT AGENT: apply ROOT's sysusers.d/tmpfiles.d files to
# a copy of this machine's user database in ROOT/etc, then check ROOT's
# /etc/provsign/agent.conf with AGENT, the copy bind-mounted over /etc/passwd
# and /etc/group in a private mount namespace (this machine's users are
# never changed).
sysusers_and_config() {
        local root=$1 agent=$2
        cp -a /etc/passwd /etc/group /etc/shadow /etc/gshadow "$root/etc/"
        check "systemd-sysusers applies provsign.conf" systemd-sysusers --root="$root" provsign.conf
        local pw
        pw=$(grep '^provsign:' "$root/etc/passwd")
        expect_eq "$(echo "$pw" | cut -d: -f6-7)" "/var/lib/provsign:/usr/sbin/nologin" "user provsign: home and shell"
        check "group provsign-clients exists" grep -q '^provsign-clients:' "$root/etc/group"
        check "provsign is a member of softhsm" grep -Eq '^softhsm:[^:]*:[0-9]+:(.*,)?provsign(,|$)' "$root/etc/group"
        local uid
        uid=$(echo "$pw" | cut -d: -f3)
        check "provsign is a system user (uid $uid)" test "$uid" -lt 1000

        check "systemd-tmpfiles applies provsign.conf" systemd-tmpfiles --root="$root" --create provsign.conf
        expect_eq "$(stat -c '%a %u %g' "$root/etc/provsign")" "750 0 $uid" "/etc/provsign is 0750 root:provsign"
        expect_eq "$(stat -c '%a %u %g' "$root/etc/provsign/agent.conf")" "640 0 $uid" "agent.conf is 0640 root:provsign"

        # With the users in place the config loads: the agent gets as far
        # as the PIN, which only systemd's LoadCredential= would provide.
        unshare --mount --propagation private bash -c '
                mount --bind "$1/etc/passwd" /etc/passwd && mount --bind "$1/etc/group" /etc/group &&
                exec "$2" --allow-root --config "$1/etc/provsign/agent.conf"' - "$root" "$agent" >"$T/out" 2>"$T/err"
        local rc=$?
        if [ "$rc" = 1 ] && grep -q 'no pin_file set and \$CREDENTIALS_DIRECTORY is unset' "$T/err"; then
                pass "the packaged config passes the agent's config check once the users exist"
        else
                fail "packaged config check: exit $rc: $(head -c 400 "$T/err")"
        fi
        # and without them (unless this machine has the package installed)
        # the agent names the missing group
        if ! getent group provsign-clients >/dev/null; then
                expect_exit 1 "without the users the config is refused" "$agent" --allow-root --config "$root/etc/provsign/agent.conf"
                check "the refusal names FILE:LINE and the group" \
                        grep -qE "^$root/etc/provsign/agent.conf:[0-9]+: unknown group \"provsign-clients\"" "$T/err"
        fi
}

# completion_matches_cli CLI COMPLETION: every verb, subcommand and option
# the CLI's --help lists is completed, and nothing else.
completion_matches_cli() {
        local cli=$1 comp=$2
        # shellcheck disable=SC1090,SC1091
        if ! (. /usr/share/bash-completion/bash_completion && . "$comp" && declare -F _provsign >/dev/null); then
                fail "bash completion does not load"
                return
        fi
        help_opts() { "$cli" "$@" --help | grep -oE -- '^ +(-[a-zA-Z], )?--[a-z][a-z-]*' | grep -oE -- '--[a-z-]+' | sort -u | tr '\n' ' '; }
        help_list() { "$cli" "$@" --help | sed -n '/^\(Verbs\|Subcommands\):/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p' | sort | tr '\n' ' '; }
        complete_words() {
                # complete_words WORD...: what <TAB> offers after "provsign WORD..."
                bash -c '. /usr/share/bash-completion/bash_completion; . "$1"; shift
                        COMP_WORDS=(provsign "$@"); COMP_CWORD=$#; COMP_LINE="provsign $*"; COMP_POINT=${#COMP_LINE}
                        _provsign provsign "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
                        printf "%s\n" "${COMPREPLY[@]}"' - "$comp" "$@" | sort -u | tr '\n' ' '
        }
        local verbs v s
        verbs=$(help_list)
        expect_eq "$(complete_words '')" "$verbs" "completion: verbs"
        expect_eq "$(complete_words --)" "$(help_opts)" "completion: global options"
        expect_eq "$(complete_words --socket /x '')" "$verbs" "completion: verbs after --socket PATH"
        for v in $verbs; do
                local subs
                subs=$(help_list "$v")
                if [ -z "$subs" ]; then
                        expect_eq "$(complete_words "$v" --)" "$(help_opts "$v")" "completion: provsign $v options"
                        continue
                fi
                expect_eq "$(complete_words "$v" '')" "$subs" "completion: provsign $v subcommands"
                for s in $subs; do
                        expect_eq "$(complete_words "$v" "$s" --)" "$(help_opts "$v" "$s")" \
                                "completion: provsign $v $s options"
                done
        done
        expect_eq "$(complete_words sign --digest '')" "sha256: sha384: " "completion: digest algorithms"
}

if [ "$mode" = quick ]; then
        # The source tree's packaging files, laid out as installed.
        R=$T/root
        mkdir -p "$R/etc/provsign" "$R/usr/lib/sysusers.d" "$R/usr/lib/tmpfiles.d"
        cp "$SRCDIR/packaging/agent.conf.example" "$R/etc/provsign/agent.conf"
        cp "$SRCDIR/packaging/sysusers.conf" "$R/usr/lib/sysusers.d/provsign.conf"
        cp "$SRCDIR/packaging/tmpfiles.conf" "$R/usr/lib/tmpfiles.d/provsign.conf"
        sysusers_and_config "$R" "$PROVSIGN_AGENT"
        completion_matches_cli "$PROVSIGN_CLI" "$SRCDIR/packaging/provsign.bash-completion"
        finish
        exit
fi

# Nothing of the build tree reaches the packaged binaries (meson points
# LD_LIBRARY_PATH at it).
unset LD_LIBRARY_PATH

# 1. Build and lint.
OUT=$T/debs
start=$(date +%s)
if "$SRCDIR/packaging/build-deb" "$OUT" >"$T/build-deb.log" 2>&1; then
        pass "packaging/build-deb ($(($(date +%s) - start)) s)"
else
        fail "packaging/build-deb failed; the end of its log:"
        tail -40 "$T/build-deb.log" >&2
        finish
        exit 1
fi
shopt -s nullglob
changes=("$OUT"/provsign_*.changes)
expect_eq "${#changes[@]}" 1 "one .changes file"
for p in provsign-agent provsign libprovsign0 libprovsign-dev; do
        debs=("$OUT/${p}_"*.deb)
        expect_eq "${#debs[@]}" 1 "package $p built"
done

lintian --tag-display-limit 0 "${changes[0]}" >"$T/lintian.out" 2>&1
lintian_rc=$?
echo "lintian (${changes[0]##*/} and its .debs):"
grep -v '^running with root privileges' "$T/lintian.out" | sed 's/^/  /'
if grep -q '^E: ' "$T/lintian.out" || [ "$lintian_rc" != 0 ]; then
        fail "lintian reports errors (exit $lintian_rc)"
else
        pass "lintian: no errors ($(grep -c '^W: ' "$T/lintian.out") warnings)"
fi

# 2. Contents. Every package unpacked into one scratch root, and the files
# each package must hold, with their modes.
S=$T/scratch
mkdir -p "$S"
for d in "$OUT"/*.deb; do
        case $d in *-dbgsym_*) continue ;; esac
        dpkg-deb -x "$d" "$S"
done
# has PACKAGE MODE PATH...: each PATH is in PACKAGE's data with MODE, root:root.
has() {
        local pkg=$1 mode=$2 f
        shift 2
        local list
        list=$(dpkg-deb -c "$OUT/${pkg}_"*.deb)
        for f in "$@"; do
                local line
                line=$(printf '%s\n' "$list" | awk -v p="./$f" '$6 == p')
                if [ -z "$line" ]; then
                        fail "$pkg lacks /$f"
                        continue
                fi
                local perm owner
                perm=$(echo "$line" | awk '{print $1}')
                owner=$(echo "$line" | awk '{print $2}')
                if [ "$perm" = "$mode" ] && [ "$owner" = root/root ]; then
                        pass "$pkg: /$f $perm $owner"
                else
                        fail "$pkg: /$f is $perm $owner, wanted $mode root/root"
                fi
        done
}
has provsign-agent -rwxr-xr-x usr/sbin/provsign-agent usr/sbin/provsign-provision-token
has provsign-agent -rw-r--r-- lib/systemd/system/provsign-agent.service lib/systemd/system/provsign-agent.socket \
        usr/lib/sysusers.d/provsign.conf usr/lib/tmpfiles.d/provsign.conf etc/provsign/agent.conf \
        usr/share/man/man8/provsign-agent.8.gz usr/share/man/man8/provsign-provision-token.8.gz \
        usr/share/man/man5/provsign-agent.conf.5.gz
has provsign-agent -rw-r--r-- usr/share/doc/provsign-agent/README.Debian usr/share/doc/provsign-agent/copyright \
        usr/share/doc/provsign-agent/examples/agent.conf.example usr/share/doc/provsign-agent/debian.md
has provsign -rw-r--r-- usr/share/doc/provsign/copyright usr/share/doc/provsign/debian.md
for p in provsign-agent provsign; do
        check "$p ships README.md (compressed or not)" \
                bash -c "dpkg-deb -c '$OUT/${p}_'*.deb | grep -Eq ' ./usr/share/doc/$p/README.md(.gz)?\$'"
done
check "debian/copyright's licence is the source's LICENSE (Apache-2.0)" \
        bash -c "grep -qx 'License: Apache-2.0' '$S/usr/share/doc/provsign-agent/copyright' && grep -q 'Apache License' '$SRCDIR/LICENSE' && grep -q 'Version 2.0, January 2004' '$SRCDIR/LICENSE'"
check "the man pages point to installed docs, not to a README that is not installed" \
        bash -c "! zgrep -lw 'the README' '$S'/usr/share/man/man*/provsign*.gz"
has provsign -rwxr-xr-x usr/bin/provsign
has provsign -rw-r--r-- lib/systemd/system/provsign-metrics.service lib/systemd/system/provsign-metrics.timer
has provsign -rw-r--r-- usr/share/man/man1/provsign.1.gz usr/share/bash-completion/completions/provsign
has libprovsign0 lrwxrwxrwx "usr/lib/$MA/libprovsign.so.0"
has libprovsign-dev lrwxrwxrwx "usr/lib/$MA/libprovsign.so"
has libprovsign-dev -rw-r--r-- usr/include/provsign.h "usr/lib/$MA/pkgconfig/provsign.pc" usr/share/man/man3/provsign.3.gz
lib=$(readlink -f "$S/usr/lib/$MA/libprovsign.so.0")
check "libprovsign.so.0 resolves to a file in libprovsign0" test -f "$lib"
check "libprovsign0 holds only the library (no .so link, no header)" \
        bash -c "! dpkg-deb -c '$OUT'/libprovsign0_*.deb | grep -Eq '\\.so\$|\\.h\$|\\.pc\$'"
expect_eq "$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')" libprovsign.so.0 "SONAME libprovsign.so.0"
check "no setuid/setgid or group/world-writable file" \
        test -z "$(find "$S" \( -perm -4000 -o -perm -2000 -o \( ! -type l -perm /022 \) \) -print)"
expect_eq "$(dpkg-deb -f "$OUT"/provsign-agent_*.deb Package)" provsign-agent "provsign-agent control file"
dpkg-deb -e "$OUT"/provsign-agent_*.deb "$T/ctl"
check "/etc/provsign/agent.conf is a conffile" grep -qx /etc/provsign/agent.conf "$T/ctl/conffiles"
check "postinst creates the users (systemd-sysusers)" grep -q 'systemd-sysusers.* provsign.conf' "$T/ctl/postinst"
check "postinst applies tmpfiles" grep -q 'systemd-tmpfiles.*--create provsign.conf' "$T/ctl/postinst"
check "postinst enables the socket" grep -q "deb-systemd-helper enable 'provsign-agent.socket'" "$T/ctl/postinst"
check "postinst starts the socket" grep -q "deb-systemd-invoke \$_dh_action 'provsign-agent.socket'" "$T/ctl/postinst"
dpkg-deb -e "$OUT"/provsign_*.deb "$T/ctl-cli"
# --no-enable: the timer is only re-enabled where an admin had enabled it.
check "provsign's postinst never starts the metrics units" \
        bash -c "! grep -q \"deb-systemd-invoke .*provsign-metrics\" '$T/ctl-cli/postinst'"
check "and enables the timer only where it was enabled" bash -c \
        "[ \"\$(grep -c \"deb-systemd-helper enable 'provsign-metrics\" '$T/ctl-cli/postinst')\" = \"\$(grep -c \"was-enabled 'provsign-metrics\" '$T/ctl-cli/postinst')\" ]"
check "postinst never starts or enables the service" bash -c "! grep -E \"(invoke|helper) .*'provsign-agent.service'\" '$T/ctl/postinst'"
# Every systemctl / deb-systemd-invoke call sits under the "systemd is
# running" test, so chroots and containers without systemd install it.
check "postinst: systemctl and deb-systemd-invoke only when systemd runs" \
        awk '/-d \/run\/systemd\/system/ {guard = 1} /^fi$/ {guard = 0}
             /(systemctl|deb-systemd-invoke) / && !guard {bad = 1} END {exit bad}' "$T/ctl/postinst"
check "postinst is valid sh" sh -n "$T/ctl/postinst"

# 3. The installed units. systemd-analyze needs the rest of a system under
# --root (sysinit.target and friends, kill for ExecReload=): a copy of the
# scratch root with this machine's units and kill added.
V=$T/verify-root
cp -a "$S" "$V"
cp -an /lib/systemd/system/. "$V/lib/systemd/system/"
mkdir -p "$V/usr/bin"
cp "$(type -P kill)" "$V/usr/bin/kill"
# Debian 12 is merged-/usr: /bin is usr/bin (ExecReload= names /bin/kill).
[ -e "$V/bin" ] || ln -s usr/bin "$V/bin"
systemd-analyze verify --man=no --root="$V" provsign-agent.socket provsign-agent.service >"$T/verify.out" 2>&1
rc=$?
if [ "$rc" = 0 ] && [ ! -s "$T/verify.out" ]; then
        pass "systemd-analyze verify: the installed units are clean"
else
        fail "systemd-analyze verify (exit $rc): $(cat "$T/verify.out")"
fi
# verify does find mistakes (unknown keys only warn: any output fails)
sed 's/^UMask=0077$/UMask=0077\nNoSuchKey=1/' "$S/lib/systemd/system/provsign-agent.service" \
        >"$V/lib/systemd/system/provsign-agent.service"
check "systemd-analyze verify reports a broken unit" \
        bash -c "systemd-analyze verify --man=no --root='$V' provsign-agent.service 2>&1 | grep -q NoSuchKey"
cp "$S/lib/systemd/system/provsign-agent.service" "$V/lib/systemd/system/provsign-agent.service"

systemd-analyze security --offline=yes --root="$V" provsign-agent.service >"$T/security.out" 2>&1
score=$(sed -n 's/.*Overall exposure level for provsign-agent.service: \([0-9.]*\).*/\1/p' "$T/security.out")
echo "systemd-analyze security: exposure $score; the remaining items:"
grep '✗' "$T/security.out" | sed 's/  */ /g; s/^/  /'
if [ -n "$score" ] && awk -v s="$score" 'BEGIN {exit !(s <= 2.0)}'; then
        pass "provsign-agent.service exposure $score <= 2.0"
else
        fail "provsign-agent.service exposure '$score', wanted <= 2.0: $(tail -3 "$T/security.out")"
fi
svc=$S/lib/systemd/system/provsign-agent.service
for kv in Type=notify User=provsign LoadCredential=pin:/etc/provsign/pin StateDirectory=provsign \
        StateDirectoryMode=0700 ConditionPathExists=/etc/provsign/pin 'ExecStart=/usr/sbin/provsign-agent --config /etc/provsign/agent.conf' \
        'ExecReload=/bin/kill -HUP $MAINPID' CapabilityBoundingSet= RestrictAddressFamilies=AF_UNIX; do
        check "service: $kv" grep -qxF "$kv" "$svc"
done
check "service: WatchdogSec set" grep -qE '^WatchdogSec=[1-9]' "$svc"
check "service: no PrivateUsers (it would hide the softhsm group)" bash -c "! grep -q '^PrivateUsers=' '$svc'"
sock=$S/lib/systemd/system/provsign-agent.socket
for kv in ListenStream=/run/provsign/agent.sock SocketMode=0660 SocketGroup=provsign-clients WantedBy=sockets.target; do
        check "socket: $kv" grep -qxF "$kv" "$sock"
done

# 4. Users, tmpfiles and the packaged config.
sysusers_and_config "$S" "$S/usr/sbin/provsign-agent"

# 5. provsign-provision-token, on a private SoftHSM2 config, as the agent's uid.
P=$T/provision
mkdir -p "$P/tokens" "$P/etc"
chown "$AGENT_UID:$AGENT_GID" "$P/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
        "$P/tokens" >"$P/softhsm2.conf"
chmod 0644 "$P/softhsm2.conf"
provision() {
        SOFTHSM2_CONF=$P/softhsm2.conf "$S/usr/sbin/provsign-provision-token" --label prov \
                --user "$AGENT_UID:$AGENT_GID" --pin-file "$P/etc/pin" --so-pin-file "$P/etc/so-pin"
}
expect_exit 0 "provsign-provision-token creates a token" provision
cp "$T/out" "$T/provision.out"
expect_eq "$(stat -c '%a %u %g' "$P/etc/pin") $(stat -c '%a %u %g' "$P/etc/so-pin")" "600 0 0 600 0 0" \
        "PIN files are 0600 root:root"
check "the user PIN is 32 hex digits" grep -qxE '[0-9a-f]{32}' "$P/etc/pin"
check "the SO PIN is 32 hex digits" grep -qxE '[0-9a-f]{32}' "$P/etc/so-pin"
check "the PINs are not printed" bash -c "! grep -qFf '$P/etc/pin' '$T/provision.out' '$T/err' && ! grep -qFf '$P/etc/so-pin' '$T/provision.out' '$T/err'"
check "it prints the next steps" grep -q 'systemctl enable --now provsign-agent.socket' "$T/provision.out"
check "the token belongs to the agent's uid" test -z "$(find "$P/tokens" -mindepth 1 ! -uid "$AGENT_UID")"
p11_login() {
        PROVSIGN_PIN=$(cat "$P/etc/pin") setpriv --reuid="$AGENT_UID" --regid="$AGENT_GID" --clear-groups \
                env SOFTHSM2_CONF="$P/softhsm2.conf" pkcs11-tool --module "$MODULE" --token-label prov \
                --login --pin env:PROVSIGN_PIN --list-objects
}
expect_exit 0 "the agent's uid logs in to the new token with the PIN file" p11_login
expect_exit 0 "provisioning again changes nothing" provision
check "and says so" grep -q 'already provisioned' "$T/out"
rm "$P/etc/pin"
expect_exit 1 "a token without its PIN file is an error" provision

# 6. The packaged agent, socket-activated, and the packaged CLI.
PCONF=$T/agent.conf
sed -e "s|^socket = .*|socket = $T/run/unused.sock|" \
    -e "s|^socket_group = .*|socket_group = $CLIENTS_GID|" \
    -e "s|^state_dir = .*|state_dir = $T/state|" \
    -e "s|^#\?log_origin = .*|log_origin = provsign.test/package|" \
    "$S/etc/provsign/agent.conf" >"$PCONF"
check "the packaged config reads the PIN from the credential (no pin_file)" bash -c "! grep -q '^pin_file' '$PCONF'"
printf '\n[principal ci-release]\nuids = %s\n' "$RUNNER_UID" >>"$PCONF"
# $CREDENTIALS_DIRECTORY as LoadCredential=pin:... leaves it: a private
# directory with the file "pin", readable by the service's user only.
mkdir -p "$T/creds"
cp "$T/tok/pin" "$T/creds/pin"
chown -R "$AGENT_UID:$AGENT_GID" "$T/creds"
chmod 0500 "$T/creds"
chmod 0400 "$T/creds/pin"

AGENT_ARGV=(setpriv --reuid="$AGENT_UID" --regid="$AGENT_GID" --groups="$CLIENTS_GID"
        env SOFTHSM2_CONF="$SOFTHSM2_CONF" CREDENTIALS_DIRECTORY="$T/creds" "$S/usr/sbin/provsign-agent")
systemd-socket-activate -l "$SOCK" "${AGENT_ARGV[@]}" --config "$PCONF" 2>>"$T/agent.log" &
AGENT_PID=$!
check "systemd-socket-activate listens" wait_for 60 test -S "$SOCK"
chgrp "$CLIENTS_GID" "$SOCK"
chmod 0660 "$SOCK"

pcli() {
        local uid=$1
        shift
        as "$uid" env LD_LIBRARY_PATH="$S/usr/lib/$MA" "$S/usr/bin/provsign" "$@"
}
check "the packaged CLI uses the packaged libprovsign" \
        bash -c "LD_LIBRARY_PATH='$S/usr/lib/$MA' ldd '$S/usr/bin/provsign' | grep -qF '$S/usr/lib/$MA/libprovsign.so.0'"
expect_exit 0 "packaged CLI: --version" pcli "$RUNNER_UID" --version
expect_exit 0 "first connection starts the packaged agent; status" pcli "$RUNNER_UID" status --json
check "status names the principal and the log origin" \
        bash -c "grep -q '\"ci-release\"' '$T/out' && grep -q 'provsign.test/package' '$T/out'"
check "the agent logged in with the PIN from \$CREDENTIALS_DIRECTORY" grep -q ' ready: ' "$T/agent.log"
expect_exit 0 "packaged CLI: pubkey" pcli "$RUNNER_UID" key pubkey --principal ci-release
cp "$T/out" "$T/pub.pem"
d=$(random_digest)
expect_exit 0 "packaged CLI: sign" pcli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d"
check "openssl verifies the signature" verify_sig "$T/pub.pem" "$d" "$(cat "$T/out")"
expect_exit 3 "a uid outside the principal is refused" pcli "$STRANGER_UID" sign --principal ci-release --digest "sha256:$d"
expect_stderr_prefix "PERMISSION_DENIED" "refusal status first on stderr"
check "the config's own socket was not created" test ! -e "$T/run/unused.sock"
stop_agent

# 7. Bash completion, as packaged, against the packaged CLI.
PCLI=$T/provsign-packaged
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$S/usr/lib/$MA" "$S/usr/bin/provsign" >"$PCLI"
chmod 0755 "$PCLI"
completion_matches_cli "$PCLI" "$S/usr/share/bash-completion/completions/provsign"
finish
