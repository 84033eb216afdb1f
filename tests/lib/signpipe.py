"""Pipelines Sign requests on one connection until STOPFILE exists: DEPTH
requests, each with its own request_id, are kept in flight (a new one is
sent as each reply comes), reconnecting when the connection fails. One line
per request, as signprobe.py writes them: start_ms end_ms status digest_hex
signature_base64 (the signature "-" unless the status is OK; requests whose
connection failed before their reply are written with status CLOSED).
Checks every reply on the way (exits 1 naming it): its request_id is one in
flight, and an OK reply's receipt is of the digest sent with that id.
Usage: signpipe.py SOCKET PRINCIPAL STOPFILE OUTFILE DEPTH"""
import base64
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rawclient as rc  # noqa: E402

sock, principal, stop, out, depth = sys.argv[1:6]
depth = int(depth)
ms = lambda: int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000)  # noqa: E731
next_id = 1
with open(out, "a") as f:
    while not os.path.exists(stop):
        pending = {}
        try:
            s = rc.connect(sock)
            s.settimeout(60)
            while not os.path.exists(stop):
                batch = b""
                while len(pending) < depth:
                    d = os.urandom(32)
                    pending[next_id] = (d, ms())
                    batch += rc.frame(rc.with_id(rc.sign_request(principal, d), next_id))
                    next_id += 1
                if batch:
                    s.sendall(batch)
                r = rc.read_fields(s)
                if r is None:
                    break
                rid = r.get(23, [0])[0]
                if rid not in pending:
                    sys.exit("a reply with request_id %d, not one in flight (%s)" % (rid, sorted(pending)))
                d, t0 = pending.pop(rid)
                status = r.get(2, [0])[0]
                st = rc.STATUS[status] if status < len(rc.STATUS) else str(status)
                sig = "-"
                if st == "OK":
                    sign = rc.fields(r[10][0])
                    leaf = rc.fields(rc.fields(sign[6][0])[3][0])
                    if leaf.get(8) != [d]:
                        sys.exit("the receipt of request %d is not of its digest" % rid)
                    sig = base64.b64encode(sign[3][0]).decode()
                f.write("%d %d %s %s %s\n" % (t0, ms(), st, d.hex(), sig))
                f.flush()
                if st not in ("OK", "HSM_UNAVAILABLE", "RATE_LIMITED"):
                    break
        except OSError:
            pass
        for rid, (d, t0) in pending.items():
            f.write("%d %d CLOSED %s -\n" % (t0, ms(), d.hex()))
        f.flush()
        time.sleep(0.01)
