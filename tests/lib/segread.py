"""A plain reader of provsign's audit log segments for the fault tests,
written from docs/formats.md / proto/record.h, not from agent/audit.c:

    record = u32 BE length || AuditEntry bytes || u32 BE CRC32C(entry)

Usage: segread.py LOGDIR [CHECKPOINT_JSON]
Checks every record's CRC, that seq (field 1) is its index, that only the
last segment may end in a torn record; prints one JSON object:
{"size": N, "root": hex, "torn_tail": bool, "sign_digests": [hex...],
"last_event": AuditEvent number of the last entry}.
With CHECKPOINT_JSON (provsign audit checkpoint --json output) it also
checks that the checkpoint's tree size and root match the records
(RFC 9162 Merkle tree via tlog.py). Exit 1 with a message on any mismatch."""
import glob
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tlog  # noqa: E402

_T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _T.append(c)


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = _T[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(b, i):
    v = s = 0
    while True:
        x = b[i]
        i += 1
        v |= (x & 0x7F) << s
        s += 7
        if not x & 0x80:
            return v, i


def fields(b):
    """(field number, wire type, value) of a protobuf message, top level."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        fn, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 2:
            n, i = varint(b, i)
            v = b[i:i + n]
            i += n
        elif wt == 1:
            v = b[i:i + 8]
            i += 8
        elif wt == 5:
            v = b[i:i + 4]
            i += 4
        else:
            raise ValueError("wire type %d" % wt)
        yield fn, wt, v


def merkle_root(leaves):
    if not leaves:
        return tlog.hashlib.sha256(b"").digest()
    level = [tlog.leaf_hash(x) for x in leaves]
    # RFC 9162 2.1.1: split at the largest power of two below n.
    def mth(lo, hi):
        n = hi - lo
        if n == 1:
            return level[lo]
        k = 1
        while k * 2 < n:
            k *= 2
        return tlog.node_hash(mth(lo, lo + k), mth(lo + k, hi))
    return mth(0, len(level))


def die(msg):
    print("segread: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    segs = sorted(glob.glob(os.path.join(sys.argv[1], "*.seg")))
    entries, digests, torn, last_event = [], [], False, 0
    for si, path in enumerate(segs):
        data = open(path, "rb").read()
        off = 0
        while off < len(data):
            if len(data) - off < 4:
                torn = True
                break
            (n,) = struct.unpack(">I", data[off:off + 4])
            if n == 0 or n > 65536:
                die("%s: offset %d: bad length %d" % (path, off, n))
            if len(data) - off < 8 + n:
                torn = True
                break
            e = data[off + 4:off + 4 + n]
            (crc,) = struct.unpack(">I", data[off + 4 + n:off + 8 + n])
            if crc != crc32c(e):
                die("%s: offset %d: CRC mismatch" % (path, off))
            seq, event, digest = 0, 0, None
            for fn, _, v in fields(e):
                if fn == 1:
                    seq = v
                elif fn == 3:
                    event = v
                elif fn == 8:
                    digest = v
            if seq != len(entries):
                die("%s: offset %d: seq %d, expected %d" % (path, off, seq, len(entries)))
            entries.append(e)
            last_event = event
            if event == 1 and digest is not None:
                digests.append(digest.hex())
            off += 8 + n
        if torn and si != len(segs) - 1:
            die("%s: torn record in a segment that is not the last" % path)
    root = merkle_root(entries)
    if len(sys.argv) > 2:
        c = json.load(open(sys.argv[2]))
        body, _ = tlog.split_note(c["checkpoint"])
        _, size, croot = tlog.parse_checkpoint(body)
        if size > len(entries):
            die("checkpoint of %d entries, the segments hold %d" % (size, len(entries)))
        if merkle_root(entries[:size]) != croot:
            die("the checkpoint root for %d entries does not match the segments" % size)
    print(json.dumps({"size": len(entries), "root": root.hex(), "torn_tail": torn,
                      "sign_digests": digests, "last_event": last_event}))


main()
