"""An independent, deliberately plain check of provsign's transparency-log
output for the tests: RFC 9162 inclusion and consistency proof verification
(§2.1.3.2, §2.1.4.2) and C2SP signed-note splitting. Written from the RFC
text, separately from proto/merkle.c, so a test that agrees with both is not
agreeing with itself. Signatures are checked by the openssl CLI."""
import base64
import hashlib


def leaf_hash(b):
    return hashlib.sha256(b"\x00" + b).digest()


def node_hash(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def verify_inclusion(leaf, index, size, proof, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(m, n, root_m, root_n, proof):
    if m == n:
        return not proof and root_m == root_n
    if m == 0 or m > n or not proof:
        return False
    if m & (m - 1) == 0:
        proof = [root_m] + list(proof)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root_m and sr == root_n


def split_note(note):
    """Returns (body bytes, [(name, key hash, signature bytes)])."""
    text = note.encode()
    i = text.rindex(b"\n\n")
    body, sigs = text[:i + 1], []
    for line in text[i + 2:].decode().splitlines():
        assert line.startswith("\u2014 "), line
        name, b64 = line[2:].split(" ")
        raw = base64.b64decode(b64, validate=True)
        sigs.append((name, raw[:4], raw[4:]))
    return body, sigs


def parse_checkpoint(body):
    lines = body.decode().split("\n")
    return lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
