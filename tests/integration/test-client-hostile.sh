#!/bin/bash
# The client against hostile surroundings: a peer that accepts and never
# answers, and one whose listen queue is full (every call has a deadline:
# --timeout > $PROVSIGN_TIMEOUT > 60 s, a missed one is exit 4 "timed
# out"); a symlink planted where the CLI writes its output (replaced, never
# followed); control characters in what the agent says, one line or a
# checkpoint note of several (never echoed raw).
. "$SRCDIR/tests/lib/common.sh"
setup_test
write_config
start_agent
d=$(random_digest)

# ---- deadlines ----
# hang.py SOCKET MODE: 'silent' accepts every connection and reads but
# never answers; 'full' listens with a backlog of 0, never accepts, and
# fills its queue itself.
cat > "$T/hang.py" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1] + ".tmp")
held = []
if sys.argv[2] == "silent":
    s.listen(16)
else:
    s.listen(0)
    for _ in range(8):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(sys.argv[1] + ".tmp")
        except BlockingIOError:
            break
        held.append(c)
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    if sys.argv[2] == "silent":
        c, _ = s.accept(); held.append(c)
    else:
        time.sleep(1)
PY
start_hang() {
        python3 "$T/hang.py" "$1" "$2" &
        hang_pids+=("$!")
        for _ in $(seq 1 100); do [ -S "$1" ] && return 0; sleep 0.1; done
        fail "hang.py $2 did not start"
}
hang_pids=()
start_hang "$T/silent.sock" silent
start_hang "$T/full.sock" full

# `timeout 60` only bounds a broken client: the deadline under test is 2 s.
expect_exit 4 "a peer that never answers: --timeout 2s is exit 4" \
        timeout 60 "$PROVSIGN_CLI" --timeout 2s --socket "$T/silent.sock" status
check "... saying 'timed out'" grep -q "timed out" "$T/err"
expect_exit 4 "... \$PROVSIGN_TIMEOUT=2s alike" \
        env PROVSIGN_TIMEOUT=2s timeout 60 "$PROVSIGN_CLI" --socket "$T/silent.sock" sign --principal ci-release --digest "sha256:$d"
check "... saying 'timed out'" grep -q "timed out" "$T/err"
expect_exit 4 "... and a streamed call (audit export) too" \
        timeout 60 "$PROVSIGN_CLI" --timeout 2s --socket "$T/silent.sock" audit export
check "... saying 'timed out'" grep -q "timed out" "$T/err"
expect_exit 4 "--timeout wins over \$PROVSIGN_TIMEOUT" \
        env PROVSIGN_TIMEOUT=1d timeout 60 "$PROVSIGN_CLI" --timeout 1s --socket "$T/silent.sock" status
expect_exit 4 "a peer whose listen queue is full: the connect times out, exit 4" \
        timeout 60 "$PROVSIGN_CLI" --timeout 2s --socket "$T/full.sock" status
check "... saying 'timed out'" grep -q "timed out" "$T/err"
expect_exit 2 "--timeout needs a duration" "$PROVSIGN_CLI" --timeout soon status
expect_exit 2 "--timeout 0 is refused" "$PROVSIGN_CLI" --timeout 0 status
expect_exit 2 "a bad \$PROVSIGN_TIMEOUT is a usage error naming it" env PROVSIGN_TIMEOUT=-3 "$PROVSIGN_CLI" status
check "... naming \$PROVSIGN_TIMEOUT" grep -q PROVSIGN_TIMEOUT "$T/err"
expect_exit 0 "a live agent answers within the deadline" cli "$RUNNER_UID" --timeout 30s status
for p in "${hang_pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null; done

# ---- output files: a planted symlink is replaced, never followed ----
mkdir -p "$T/w"
chown "$RUNNER_UID" "$T/w"
echo "precious" > "$T/w/victim"
chown "$RUNNER_UID" "$T/w/victim"
ln -s "$T/w/victim" "$T/w/receipt.json"
expect_exit 0 "sign --receipt onto a symlink" \
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" --receipt "$T/w/receipt.json"
expect_eq "$(cat "$T/w/victim")" "precious" "the symlink's target is untouched"
check "the receipt replaced the link with a regular file" test -f "$T/w/receipt.json" -a ! -L "$T/w/receipt.json"
check "... holding the receipt" grep -q '"log_seq"' "$T/w/receipt.json"
ln -s "$T/w/victim" "$T/w/envelope.json"
echo '{"x":1}' > "$T/w/payload"
chown "$RUNNER_UID" "$T/w/payload"
expect_exit 0 "attest --output onto a symlink" \
        cli "$RUNNER_UID" attest --principal ci-release --type application/json --output "$T/w/envelope.json" "$T/w/payload"
expect_eq "$(cat "$T/w/victim")" "precious" "the symlink's target is untouched"
check "the envelope is a regular file" test -f "$T/w/envelope.json" -a ! -L "$T/w/envelope.json"
# an existing regular file keeps its mode
chmod 0600 "$T/w/receipt.json"
expect_exit 0 "sign --receipt over an existing file" \
        cli "$RUNNER_UID" sign --principal ci-release --digest "sha256:$d" --receipt "$T/w/receipt.json"
expect_eq "$(stat -c %a "$T/w/receipt.json")" "600" "... which keeps its mode"
check "no temporary file is left behind" test "$(find "$T/w" -name '*.json.*' | wc -l)" = 0

# ---- control characters from the agent are not echoed ----
# a fake agent refusing with a message full of C0 and C1 controls
python3 - "$T/ctl.sock" <<'PY' &
import socket, struct, sys, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1] + ".tmp"); s.listen(1)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
c, _ = s.accept(); c.recv(65536)
msg = "evil\x1b]0;owned\x07 \u009b31m csi \u0085 nel end".encode()
# Response{protocol_version=1, status=PERMISSION_DENIED(2), message=msg}
body = b"\x08\x01\x10\x02\x1a" + bytes([len(msg)]) + msg
c.sendall(struct.pack(">I", len(body)) + body); c.close()
PY
ctl=$!
for _ in $(seq 1 100); do [ -S "$T/ctl.sock" ] && break; sleep 0.1; done
expect_exit 3 "a refusal whose message carries control characters" "$PROVSIGN_CLI" --socket "$T/ctl.sock" status
wait "$ctl"
check "no ESC, BEL or C1 byte reaches stderr" python3 -c '
import sys
b = open(sys.argv[1], "rb").read()
assert b"\x1b" not in b and b"\x07" not in b, b
assert b"\xc2\x9b" not in b and b"\xc2\x85" not in b, b
assert b"evil" in b and b"end" in b, b' "$T/err"

# a checkpoint note (printed as several lines) whose origin carries a C1 CSI
python3 - "$T/cp.sock" <<'PY' &
import base64, os, socket, struct, sys
def fv(n, v):
    out = bytes([n << 3]); b = bytearray()
    while True:
        x = v & 0x7f; v >>= 7
        b.append(x | (0x80 if v else 0))
        if not v: return out + bytes(b)
def fb(n, b):
    return bytes([n << 3 | 2]) + fv(0, len(b))[1:] + b
origin = "evil\u009b31m.example/log"
note = "%s\n1\n%s\n\n\u2014 %s %s\n" % (origin, base64.b64encode(b"r" * 32).decode(), origin,
                                       base64.b64encode(b"hash" + b"s" * 64).decode())
body = fv(1, 1) + fb(14, fb(1, note.encode()) + fv(2, 1))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1] + ".tmp"); s.listen(1)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
c, _ = s.accept(); c.recv(65536)
c.sendall(struct.pack(">I", len(body)) + body); c.close()
PY
cpf=$!
for _ in $(seq 1 100); do [ -S "$T/cp.sock" ] && break; sleep 0.1; done
expect_exit 0 "audit checkpoint prints a note whose origin carries a C1 control" \
        "$PROVSIGN_CLI" --socket "$T/cp.sock" audit checkpoint
wait "$cpf"
check "... with the C1 control masked, the lines kept" python3 -c '
import sys
b = open(sys.argv[1], "rb").read()
assert b"\xc2\x9b" not in b and b"\x9b" not in b, b
assert b.count(b"\n") == 5 and b.startswith(b"evil?31m.example/log\n1\n"), b' "$T/out"

finish
