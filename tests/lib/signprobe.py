"""Signs back to back on one connection until STOPFILE exists, one line per
call: start_ms end_ms status digest_hex signature_base64 (monotonic clock,
ms; the signature "-" unless the status is OK). For the fault
tests' detection and recovery times: no process start per call.
Usage: signprobe.py SOCKET PRINCIPAL STOPFILE OUTFILE [PAUSE_MS]"""
import base64
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rawclient as rc  # noqa: E402

sock, principal, stop, out = sys.argv[1:5]
pause = int(sys.argv[5]) / 1000 if len(sys.argv) > 5 else 0
ms = lambda: int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000)  # noqa: E731
s = None
with open(out, "a") as f:
    while not os.path.exists(stop):
        d = os.urandom(32)
        sig = "-"
        t0 = ms()
        try:
            if s is None:
                s = rc.connect(sock)
                s.settimeout(60)
            s.sendall(rc.frame(rc.sign_request(principal, d)))
            hdr = rc.recv_exact(s, 4)
            payload = rc.recv_exact(s, struct.unpack(">I", hdr)[0]) if hdr else None
            st = rc.decode_response(payload)[0] if payload is not None else "CLOSED"
            if st == "OK":  # SignResponse (field 10).signature (field 3)
                sig = base64.b64encode(rc.fields(rc.fields(payload)[10][0])[3][0]).decode()
        except OSError as e:
            st = "ERROR-" + type(e).__name__
        if st not in ("OK", "HSM_UNAVAILABLE", "RATE_LIMITED"):
            s = None
        f.write("%d %d %s %s %s\n" % (t0, ms(), st, d.hex(), sig))
        f.flush()
        if st != "OK":
            time.sleep(0.01)  # a failing agent answers at once: do not spin
        elif pause:
            time.sleep(pause)
