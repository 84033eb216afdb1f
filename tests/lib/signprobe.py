"""Signs back to back on one connection until STOPFILE exists, one line per
call: start_ms end_ms status digest_hex (monotonic clock, ms). For the fault
tests' detection and recovery times: no process start per call.
Usage: signprobe.py SOCKET PRINCIPAL STOPFILE OUTFILE [PAUSE_MS]"""
import os
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
        t0 = ms()
        try:
            if s is None:
                s = rc.connect(sock)
                s.settimeout(60)
            s.sendall(rc.frame(rc.sign_request(principal, d)))
            r = rc.read_response(s)
            st = r[0] if r else "CLOSED"
        except OSError as e:
            st = "ERROR-" + type(e).__name__
        if st not in ("OK", "HSM_UNAVAILABLE", "RATE_LIMITED"):
            s = None
        f.write("%d %d %s %s\n" % (t0, ms(), st, d.hex()))
        f.flush()
        if st != "OK":
            time.sleep(0.01)  # a failing agent answers at once: do not spin
        elif pause:
            time.sleep(pause)
