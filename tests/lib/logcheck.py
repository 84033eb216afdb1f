"""An independent check of the key ordering rule (docs/architecture.md "The Sign path"): reads
the agent's log segments directly (records: u32 BE length, entry, CRC32C),
decodes just the fields it needs by hand, replays the key events and checks
that every sign entry names the key that was active for its principal at
its position in the log. Written from the proto and docs/formats.md, separately
from agent/registry.c. Usage: logcheck.py STATE_DIR/log"""
import os
import struct
import sys

SIGN, KEY_CREATE, KEY_ROTATE, KEY_REVOKE, KEY_DESTROY = 1, 4, 5, 6, 7


def varint(b, i):
    shift = v = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def fields(b):
    out, i = {}, 0
    while i < len(b):
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(num, v)
    return out


def entries(logdir):
    for name in sorted(f for f in os.listdir(logdir) if f.endswith(".seg")):
        data = open(os.path.join(logdir, name), "rb").read()
        off = 0
        while off + 8 <= len(data):
            (n,) = struct.unpack(">I", data[off:off + 4])
            if off + 8 + n > len(data):
                break
            yield fields(data[off + 4:off + 4 + n])
            off += 8 + n


def main():
    active, signs, keys = {}, 0, 0
    for e in entries(sys.argv[1]):
        seq, ev = e.get(1, 0), e.get(3, 0)
        principal = e.get(5, b"").decode()
        keyid = e.get(6, b"").decode()
        if principal == "log":
            continue
        if ev in (KEY_CREATE, KEY_ROTATE):
            keys += 1
            if ev == KEY_ROTATE or principal not in active or active[principal] is None:
                active[principal] = keyid
        elif ev == KEY_REVOKE and active.get(principal) == keyid:
            active[principal] = None
        elif ev == SIGN and e.get(11, 0) == 0:
            signs += 1
            if active.get(principal) != keyid:
                sys.exit("entry %d: sign entry of %s names key %s, but the active key there is %s"
                         % (seq, principal, keyid, active.get(principal)))
    print("%d sign entries name the active key of their principal (%d keys)" % (signs, keys))


main()
