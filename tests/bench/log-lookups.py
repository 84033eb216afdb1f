"""Find and Proof latency against a running agent, for tests/bench/log-scale.

    log-lookups.py SOCKET LOG_SIZE N_GENERATED

Over one connection: 200 Proof requests of random seqs below LOG_SIZE, then
200 Find requests by the digest of a random SIGN entry (the digests are read
from the proofs' leaves, so every Find is a hit on any log). Prints one JSON
object with p50/p99 in milliseconds. Request/response bytes by hand
(tests/lib/rawclient.py), so the figure is the agent's, not a CLI's start-up.
"""
import json
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import rawclient as rc  # noqa: E402


def fields(b):
    """(field number, wire type, value) of one protobuf message level."""
    out, i = [], 0
    while i < len(b):
        key, i = rc.read_varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = rc.read_varint(b, i)
        elif wt == 2:
            n, i = rc.read_varint(b, i)
            v = b[i:i + n]
            i += n
        else:
            raise ValueError("wire type %d" % wt)
        out.append((num, wt, v))
    return out


def read_frame(s):
    import struct
    hdr = rc.recv_exact(s, 4)
    (n,) = struct.unpack(">I", hdr)
    return rc.recv_exact(s, n)


def body(resp, num):
    for f, wt, v in fields(resp):
        if f == 2 and v != 0:
            raise SystemExit("agent refused: %s" % rc.decode_response(resp)[1])
        if f == num:
            return v
    return None


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    path, size = sys.argv[1], int(sys.argv[2])
    rnd = random.Random(7)
    s = rc.connect(path)
    proof_ms, digests = [], []
    for _ in range(200):
        seq = rnd.randrange(size)
        t0 = time.perf_counter()
        s.sendall(rc.frame(rc.request(22, rc.field_varint(1, seq))))
        resp = read_frame(s)
        proof_ms.append((time.perf_counter() - t0) * 1e3)
        receipt = dict((f, v) for f, _, v in fields(body(resp, 20)))[1]
        leaf = dict((f, v) for f, _, v in fields(receipt))[3]
        entry = dict((f, v) for f, _, v in fields(leaf))
        if entry.get(3) == 1 and 8 in entry:  # SIGN
            digests.append(entry[8])
    if not digests:
        raise SystemExit("no SIGN entry among the proofs")
    find_ms = []
    for i in range(200):
        d = digests[i % len(digests)]
        t0 = time.perf_counter()
        s.sendall(rc.frame(rc.request(21, rc.field_bytes(1, d))))
        hits = 0
        while True:
            resp = read_frame(s)
            fr = fields(body(resp, 19) or b"")
            hits += sum(1 for f, _, _ in fr if f == 1)
            if any(f == 2 and v for f, _, v in fr):
                break
        find_ms.append((time.perf_counter() - t0) * 1e3)
        if hits < 1:
            raise SystemExit("find of a logged digest found nothing")
    print(json.dumps({"proof_p50_ms": statistics.median(proof_ms), "proof_p99_ms": pct(proof_ms, 99),
                      "find_p50_ms": statistics.median(find_ms), "find_p99_ms": pct(find_ms, 99)}))


main()
