"""Signs COUNT digests on each of CONNS connections at once (one thread per
connection), after GOFILE exists (so several runs can start together). One
line per call to OUTFILE: status digest_hex signature_base64 (signature "-"
unless OK); then OUTFILE.time gets "start_ns end_ns" (monotonic) of the
whole run. For throughput figures without a process start per call.
Usage: signmany.py SOCKET PRINCIPAL CONNS COUNT GOFILE OUTFILE"""
import base64
import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rawclient as rc  # noqa: E402

sock, principal, conns, count, go, out = sys.argv[1:7]
conns, count = int(conns), int(count)
lines = []
lock = threading.Lock()


def worker():
    s = rc.connect(sock)
    s.settimeout(120)
    mine = []
    for _ in range(count):
        d = os.urandom(32)
        s.sendall(rc.frame(rc.sign_request(principal, d)))
        hdr = rc.recv_exact(s, 4)
        payload = rc.recv_exact(s, struct.unpack(">I", hdr)[0]) if hdr else None
        st = rc.decode_response(payload)[0] if payload is not None else "CLOSED"
        sig = "-"
        if st == "OK":  # SignResponse (field 10).signature (field 3)
            sig = base64.b64encode(rc.fields(rc.fields(payload)[10][0])[3][0]).decode()
        mine.append("%s %s %s\n" % (st, d.hex(), sig))
        if st == "CLOSED":
            break
    s.close()
    with lock:
        lines.extend(mine)


deadline = time.monotonic() + 120
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.01)
threads = [threading.Thread(target=worker) for _ in range(conns)]
t0 = time.monotonic_ns()
for t in threads:
    t.start()
for t in threads:
    t.join()
t1 = time.monotonic_ns()
with open(out, "w") as f:
    f.writelines(lines)
with open(out + ".time", "w") as f:
    f.write("%d %d\n" % (t0, t1))
