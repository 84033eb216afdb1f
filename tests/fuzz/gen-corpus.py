#!/usr/bin/env python3
"""Writes the fuzzing seed corpora, tests/fuzz/corpus/<harness>/, and
tests/fuzz/fuzz-keys.h (the keys the note and receipt harnesses verify with).

    tests/fuzz/gen-corpus.py        # from anywhere; rewrites the seeds

Only the Python standard library and the openssl command (for ECDSA). The
bytes are built here independently of provsign's C code: protobuf by hand
from proto/provsign.proto's field numbers, records with a CRC32C written
here, checkpoints from tests/vectors/tlog.json (made by golang.org/x/mod,
not by us) and from a fixed test key.

The test key is a P-256 key whose private scalar is SHA-256 of a public
string: it signs nothing but these seeds, and no key file is kept. ECDSA
signatures are randomized, so a rerun changes the signed seeds' bytes
(not their meaning). Files named crash-* are reproducers and are left alone.
"""

import base64
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")

# ---- helpers ---------------------------------------------------------------


def write(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def clean(harness):
    d = os.path.join(CORPUS, harness)
    if os.path.isdir(d):
        for n in os.listdir(d):
            if not n.startswith("crash-"):
                os.unlink(os.path.join(d, n))


def b64(b):
    return base64.b64encode(b).decode()


def be32(n):
    return struct.pack(">I", n & 0xFFFFFFFF)


def sha256(b):
    return hashlib.sha256(b).digest()


# CRC32C, RFC 3720 B.4 (reflected polynomial 0x82F63B78), bit by bit.
def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


# ---- protobuf wire format (proto/provsign.proto) ---------------------------


def varint(v):
    v &= (1 << 64) - 1  # negative int32/int64: ten bytes, two's complement
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fv(num, v):
    """A varint field; proto3 omits zero."""
    return varint(num << 3) + varint(v) if v else b""


def fb(num, b):
    """A length-delimited field (bytes, string, message); proto3 omits empty
    bytes/strings, messages are always written (pass msg=True)."""
    if isinstance(b, str):
        b = b.encode()
    return varint(num << 3 | 2) + varint(len(b)) + b if b else b""


def fm(num, b):
    return varint(num << 3 | 2) + varint(len(b)) + b


# enums
SHA256, SHA384 = 1, 2
ECDSA_P256, ECDSA_P384, RSA_3072 = 1, 2, 3
(SIGN, REFUSED, REFUSED_SUMMARY, KEY_CREATE, KEY_ROTATE, KEY_REVOKE, KEY_DESTROY,
 AGENT_START, AGENT_STOP, POLICY_LOAD) = range(1, 11)
PERMISSION_DENIED, RATE_LIMITED = 2, 6


def annotation(k, v):
    return fb(1, k) + fb(2, v)


def request(body_field, body, version=1):
    return fv(1, version) + (fm(body_field, body) if body_field else b"")


def caller(uid, gid, pid, exe):
    return fv(1, uid) + fv(2, gid) + fv(3, pid) + fb(4, exe)


def audit_entry(seq, time_us, event, **f):
    b = fv(1, seq) + fv(2, time_us) + fv(3, event)
    if "caller" in f:
        b += fm(4, f["caller"])
    b += fb(5, f.get("principal", "")) + fb(6, f.get("keyid", ""))
    b += fv(7, f.get("digest_algorithm", 0)) + fb(8, f.get("digest", b""))
    b += fb(9, f.get("payload_type", ""))
    for a in f.get("annotations", []):
        b += fm(10, a)
    b += fv(11, f.get("status", 0)) + fb(12, f.get("message", "")) + fb(13, f.get("request", ""))
    b += fv(14, f.get("generation", 0)) + fv(15, f.get("algorithm", 0))
    b += fb(16, f.get("public_key_der", b"")) + fv(17, f.get("suppressed", 0))
    b += fb(18, f.get("reason", "")) + fv(19, f.get("compromised_since_us", 0))
    return b


# ---- keys ------------------------------------------------------------------

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
CORPUS_ORIGIN = "fuzz.example/provsign-log"


class TestKey:
    """The fixed P-256 test key, through the openssl command."""

    def __init__(self, tmp):
        d = int.from_bytes(sha256(b"provsign fuzz corpus test key, not a secret"), "big") % P256_ORDER
        # ECPrivateKey (RFC 5915): version 1, the scalar, [0] prime256v1;
        # OpenSSL computes the public point.
        oid = bytes.fromhex("06082a8648ce3d030107")
        der = bytes.fromhex("020101") + b"\x04\x20" + d.to_bytes(32, "big") + b"\xa0" + bytes([len(oid)]) + oid
        der = b"\x30" + bytes([len(der)]) + der
        self.path = os.path.join(tmp, "key.der")
        with open(self.path, "wb") as f:
            f.write(der)
        self.spki = subprocess.run(["openssl", "ec", "-inform", "DER", "-in", self.path, "-pubout",
                                    "-outform", "DER"], check=True, capture_output=True).stdout
        self.pem = subprocess.run(["openssl", "ec", "-inform", "DER", "-in", self.path, "-pubout"],
                                  check=True, capture_output=True).stdout.decode()
        self.tmp = tmp

    def sign(self, text):
        p = os.path.join(self.tmp, "msg")
        with open(p, "wb") as f:
            f.write(text)
        return subprocess.run(["openssl", "dgst", "-sha256", "-keyform", "DER", "-sign", self.path, p],
                              check=True, capture_output=True).stdout


def sig_line(name, spki, der_sig):
    return "\u2014 %s %s\n" % (name, b64(sha256(spki)[:4] + der_sig))


def signed_note(key, name, text):
    return text + "\n" + sig_line(name, key.spki, key.sign(text.encode()))


def pem_to_der(pem):
    lines = [l for l in pem.strip().splitlines() if not l.startswith("-----")]
    return base64.b64decode("".join(lines))


def c_bytes(name, b):
    rows = []
    for i in range(0, len(b), 12):
        rows.append("        " + ", ".join("0x%02x" % x for x in b[i:i + 12]) + ",")
    return ("static const uint8_t %s[] __attribute__((unused)) = {\n" % name) + "\n".join(rows) + "\n};\n"


def c_string(name, s):
    body = "\n".join('        "%s\\n"' % l for l in s.strip().splitlines())
    return "static const char %s[] __attribute__((unused)) =\n%s;\n" % (name, body)


def write_keys_header(tlog_spki, tlog_name, key):
    h = ("/* Generated by tests/fuzz/gen-corpus.py: the keys the seed notes and\n"
         " * receipts are signed with. Public keys only. */\n"
         "#pragma once\n\n#include <stdint.h>\n\n"
         "/* tests/vectors/tlog.json \"ecdsa_public_key_pem\" (made by golang.org/x/mod),\n"
         " * which verifies the ECDSA line of its \"checkpoint\" under this name. */\n"
         '#define FUZZ_TLOG_KEY_NAME "%s"\n' % tlog_name)
    h += c_bytes("fuzz_tlog_spki", tlog_spki)
    h += ("\n/* The corpus test key (P-256; its scalar is SHA-256 of a public string):\n"
          " * signs the seed checkpoints of origin FUZZ_CORPUS_ORIGIN. */\n"
          '#define FUZZ_CORPUS_ORIGIN "%s"\n' % CORPUS_ORIGIN)
    h += c_bytes("fuzz_corpus_spki", key.spki)
    h += c_string("fuzz_corpus_pem", key.pem)
    with open(os.path.join(HERE, "fuzz-keys.h"), "w") as f:
        f.write(h)


# ---- Merkle tree (RFC 9162 §2.1) -------------------------------------------


def leaf_hash(b):
    return sha256(b"\x00" + b)


def node_hash(l, r):
    return sha256(b"\x01" + l + r)


def mth(leaves):
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def inclusion(m, leaves):
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return inclusion(m, leaves[:k]) + [mth(leaves[k:])]
    return inclusion(m - k, leaves[k:]) + [mth(leaves[:k])]


# ---- replies: what a (hostile) agent sends libprovsign (fuzz-reply.c) ------

# The digest fuzz-reply.c signs, and its call numbers (the input's first byte).
REPLY_DIGEST = b"\xbf\x2a" + b"\x00" * 30
CALL = {"status": 0, "sign": 1, "dsse": 2, "pubkey": 3, "pubkey-id": 4, "list": 5, "list-p": 6, "rotate": 7,
        "revoke": 8, "destroy": 9, "bundle": 10, "checkpoint": 11, "consistency": 12, "log-key": 13,
        "export": 14, "export-stop": 15, "find": 16, "proof": 17, "sign-many": 18}


def frame(b):
    return be32(len(b)) + b


def response(body_field=0, body=b"", status=0, message=""):
    return frame(fv(1, 1) + fv(2, status) + fb(3, message) + (fm(body_field, body) if body_field else b""))


def with_id(reply, request_id):
    """A framed Response with Response.request_id (23) added."""
    return frame(reply[4:] + fv(23, request_id))


def key_info(spki, principal="ci-release", generation=1, state=1):
    return (fb(1, hashlib.sha256(spki).hexdigest()) + fb(2, principal) + fv(3, generation) + fv(4, ECDSA_P256)
            + fv(5, state) + fv(6, T0) + fb(7, spki) + fv(13, 1))


def receipt_msg(seq, leaf, tree_size, proof, note):
    return (fv(1, seq) + fv(2, T0 + seq) + fb(3, leaf) + fv(4, tree_size) + b"".join(fb(5, h) for h in proof)
            + fb(6, note))


def replies(key):
    keyid = hashlib.sha256(key.spki).hexdigest()
    leaves = [audit_entry(0, T0, AGENT_START, message="provsign 0.1.0"),
              audit_entry(1, T0 + 1, SIGN, caller=caller(1001, 1001, 4242, "/usr/bin/provsign"),
                          principal="ci-release", keyid=keyid, digest_algorithm=SHA256, digest=REPLY_DIGEST,
                          payload_type="text/plain", annotations=[annotation("k", "v")], generation=1,
                          algorithm=ECDSA_P256),
              audit_entry(2, T0 + 2, KEY_ROTATE, principal="ci-release", keyid=keyid)]
    cp3 = signed_note(key, CORPUS_ORIGIN, "%s\n3\n%s\n" % (CORPUS_ORIGIN, b64(mth(leaves))))
    status = response(12, fb(1, "0.1.0") + fv(2, 1) + fb(3, "provsign") + fb(4, "ci-release") + fb(4, "ci-nightly")
                      + fv(5, 77) + fb(6, "ci-release") + fb(7, "auditor") + fb(8, CORPUS_ORIGIN) + fv(9, 3))
    pubkey = response(11, fm(1, key_info(key.spki)))
    sign = response(10, fb(1, keyid) + fv(2, ECDSA_P256) + fb(3, b"\x30\x06\x02\x01\x01\x02\x01\x01")
                    + fb(4, "ci-release") + fv(5, 1) + fm(6, receipt_msg(1, leaves[1], 3, inclusion(1, leaves), cp3)))
    env = json.dumps({"payloadType": "application/vnd.provsign.keybundle.v1+json", "payload": b64(b"{}"),
                      "signatures": [{"keyid": keyid, "sig": b64(b"sig")}]}, separators=(",", ":"))
    export_end = (fv(3, 1) + fb(4, cp3) + fv(5, 3))
    r = {
        "status": bytes([CALL["status"]]) + status,
        "status-refused": bytes([CALL["status"]]) + response(status=PERMISSION_DENIED, message="not yours"),
        "status-unknown-status": bytes([CALL["status"]]) + response(status=99),
        "status-wrong-body": bytes([CALL["status"]]) + pubkey,
        "status-oversized": bytes([CALL["status"]]) + be32(65537) + b"\x08\x01",
        "status-torn": bytes([CALL["status"]]) + status[:-3],
        "sign": bytes([CALL["sign"]]) + sign,
        "sign-then-status": bytes([CALL["sign"]]) + sign + status,
        "sign-rate-limited": bytes([CALL["sign"]]) + response(status=RATE_LIMITED, message="slow down"),
        # provsign_sign_many of three: out of order by id, by order without ids, refused then cut off
        "sign-many": bytes([CALL["sign-many"]]) + with_id(sign, 2) + with_id(sign, 1) + with_id(sign, 3),
        "sign-many-no-ids": bytes([CALL["sign-many"]]) + sign + sign + sign,
        "sign-many-refused-midway": bytes([CALL["sign-many"]]) + with_id(sign, 1)
        + with_id(response(status=RATE_LIMITED, message="slow down"), 2),
        "dsse": bytes([CALL["dsse"]]) + status + pubkey + sign + pubkey,
        "pubkey": bytes([CALL["pubkey"]]) + pubkey,
        "pubkey-id": bytes([CALL["pubkey-id"]]) + pubkey,
        "list": bytes([CALL["list"]]) + response(13, fm(1, key_info(key.spki)) + fm(1, key_info(key.spki, "ci-nightly", 2, 2))),
        "list-p": bytes([CALL["list-p"]]) + response(13, fm(1, key_info(key.spki))),
        "rotate": bytes([CALL["rotate"]]) + response(17, fm(1, key_info(key.spki)) + fm(2, key_info(key.spki)) + fv(3, 9)),
        "revoke": bytes([CALL["revoke"]]) + response(17, fm(1, key_info(key.spki, state=3)) + fv(3, 10)),
        "destroy": bytes([CALL["destroy"]]) + response(17, fv(3, 11)),
        "bundle": bytes([CALL["bundle"]]) + response(16, fb(1, env[:40]) + fv(2, 1)) + response(16, fb(1, env[40:])),
        "checkpoint": bytes([CALL["checkpoint"]]) + response(14, fb(1, cp3) + fv(2, 3)),
        "consistency": bytes([CALL["consistency"]]) + response(14, fb(1, cp3) + fv(2, 3) + fv(3, 2)
                                                              + fb(4, leaf_hash(leaves[2])) + fb(4, mth(leaves[:2]))),
        "log-key": bytes([CALL["log-key"]]) + response(15, fb(1, CORPUS_ORIGIN) + fb(2, key.spki) + fb(5, keyid)),
        "export": bytes([CALL["export"]]) + response(18, fv(1, 0) + fb(2, leaves[0]) + fb(2, leaves[1]))
        + response(18, fv(1, 2) + fb(2, leaves[2]) + export_end),
        "export-one-frame": bytes([CALL["export"]]) + response(18, b"".join(fb(2, l) for l in leaves) + export_end),
        "export-gap": bytes([CALL["export"]]) + response(18, fv(1, 0) + fb(2, leaves[0]) + fb(2, leaves[2]) + export_end),
        "export-refused-midway": bytes([CALL["export"]]) + response(18, fv(1, 0) + fb(2, leaves[0]))
        + response(status=PERMISSION_DENIED, message="gone"),
        "export-stop": bytes([CALL["export-stop"]]) + response(18, fv(1, 0) + fb(2, leaves[0]) + fb(2, leaves[1]))
        + response(18, fv(1, 2) + fb(2, leaves[2]) + export_end),
        "find": bytes([CALL["find"]]) + response(19, fb(1, leaves[1]) + fv(3, 5)) + response(19, fv(2, 1)),
        "proof": bytes([CALL["proof"]]) + response(20, fm(1, receipt_msg(1, leaves[1], 3, inclusion(1, leaves), cp3))),
        "proof-wrong-seq": bytes([CALL["proof"]]) + response(20, fm(1, receipt_msg(2, leaves[2], 3, inclusion(2, leaves), cp3))),
    }
    return r


# ---- the corpora -----------------------------------------------------------

T0 = 1795630801123456  # 2026-11-25T18:20:01.123456Z
T0_TEXT = "2026-11-25T18:20:01.123456Z"
KEYID = hashlib.sha256(b"a signing key").hexdigest()
DIGEST = sha256(b"release.tar.gz")


def requests():
    sign = (fb(1, "ci-release") + fv(2, SHA256) + fb(3, DIGEST) + fb(4, "application/vnd.oci.image.manifest.v1+json")
            + fm(5, annotation("git.commit", "0123abcd")) + fm(5, annotation("ci.job", "1234")))
    r = {
        "status": request(12, b""),
        "sign": request(10, sign),
        "sign-sha384": request(10, fv(2, SHA384) + fb(3, sha256(b"x") + sha256(b"y")[:16])),
        "sign-no-principal": request(10, fv(2, SHA256) + fb(3, DIGEST)),
        "sign-short-digest": request(10, fb(1, "ci-release") + fv(2, SHA256) + fb(3, DIGEST[:31])),
        "sign-unknown-digest-alg": request(10, fv(2, 7) + fb(3, DIGEST)),
        "sign-control-char-payload-type": request(10, fv(2, SHA256) + fb(3, DIGEST) + fb(4, "text/plain\x07")),
        "sign-empty-annotation-key": request(10, fv(2, SHA256) + fb(3, DIGEST) + fm(5, annotation("", "v"))),
        "sign-33-annotations": request(10, fv(2, SHA256) + fb(3, DIGEST)
                                       + b"".join(fm(5, annotation("k%d" % i, "v")) for i in range(33))),
        # the annotation limits (fuzz-request also validates under 2 annotations of 16 bytes)
        "sign-annotation-4097-bytes": request(10, fv(2, SHA256) + fb(3, DIGEST) + fm(5, annotation("k", "v" * 4096))),
        "sign-annotations-over-budget": request(10, fv(2, SHA256) + fb(3, DIGEST)
                                                + b"".join(fm(5, annotation("k%d" % i, "v" * 4000)) for i in range(7))),
        "sign-three-annotations": request(10, fv(2, SHA256) + fb(3, DIGEST)
                                          + b"".join(fm(5, annotation(k, "1")) for k in "abc")),
        "sign-annotation-17-bytes": request(10, fv(2, SHA256) + fb(3, DIGEST) + fm(5, annotation("artifact", "123456789"))),
        "get-public-key-principal": request(11, fb(1, "ci-release")),
        "get-public-key-keyid": request(11, fb(2, KEYID)),
        "get-public-key-both": request(11, fb(1, "ci-release") + fb(2, KEYID)),
        "get-public-key-uppercase-keyid": request(11, fb(2, KEYID.upper())),
        "list-keys": request(13, b""),
        "list-keys-principal": request(13, fb(1, "ci-nightly")),
        "get-key-bundle": request(14, b""),
        "get-checkpoint": request(15, b""),
        "get-checkpoint-from": request(15, fv(1, 7)),
        "get-log-key": request(16, b""),
        "rotate-key": request(17, fb(1, "ci-release") + fv(2, ECDSA_P384)),
        "rotate-key-bad-principal": request(17, fb(1, "../log")),
        "revoke-key": request(18, fb(1, KEYID) + fb(2, "laptop stolen") + fv(3, T0)),
        "destroy-key": request(19, fb(1, KEYID)),
        "export": request(20, fv(1, 10) + fv(2, 20) + fv(3, 5)),
        "find": request(21, fb(1, DIGEST) + fb(2, "ci-release") + fv(3, T0) + fv(4, T0 + 10**6)),
        "proof": request(22, fv(1, 12)),
        "empty": b"",
        "no-body": fv(1, 1),
        "protocol-version-2": request(12, b"", version=2),
        "two-bodies": request(12, b"") + fm(17, fb(1, "ci-release")),
        "same-body-twice": request(10, fb(1, "ci-release")) + fm(10, fv(2, SHA256) + fb(3, DIGEST)),
        "unknown-field": request(12, b"") + fb(99, b"from a newer client") + varint(100 << 3) + varint(5),
        "unknown-body-field": fv(1, 1) + fm(30, b""),
        "negative-enum": request(10, fv(2, -1) + fb(3, DIGEST)),
        "overlong-varint": varint(1 << 3) + b"\x81\x80\x80\x80\x00" + fm(12, b""),
        "truncated": request(10, sign)[:-5],
        "wrong-wire-type": varint(10 << 3 | 0) + varint(1),
        # field 0 in an over-long tag (82 00): protobuf-c 1.4.1 keeps it as
        # an unknown field, then refuses its own re-packing (fuzz-pb.h)
        "pbc-overlong-field0-tag": fv(1, 1) + b"\x82\x00\x00",
    }
    return r


def audit_entries(spki):
    who = fm(4, caller(1001, 1001, 4242, "/usr/bin/provsign"))
    e = {
        "sign": audit_entry(1, T0, SIGN, caller=caller(1001, 1001, 4242, "/usr/bin/provsign"), principal="ci-release",
                            keyid=KEYID, digest_algorithm=SHA256, digest=DIGEST, payload_type="application/octet-stream",
                            annotations=[annotation("git.commit", "0123abcd")], generation=1, algorithm=ECDSA_P256),
        "refused": audit_entry(2, T0, REFUSED, caller=caller(1002, 1002, 7, ""), status=PERMISSION_DENIED,
                               message="uid 1002 may not sign for ci-release", request="Sign", principal="ci-release"),
        "refused-summary": audit_entry(3, T0, REFUSED_SUMMARY, caller=caller(1002, 1002, 0, ""), status=RATE_LIMITED,
                                       suppressed=12345),
        "key-create": audit_entry(4, T0, KEY_CREATE, principal="ci-release", keyid=KEYID, generation=1,
                                  algorithm=ECDSA_P256, public_key_der=spki),
        "key-rotate": audit_entry(5, T0, KEY_ROTATE, principal="ci-release", keyid=KEYID, generation=2,
                                  algorithm=ECDSA_P384),
        "key-revoke": audit_entry(6, T0, KEY_REVOKE, principal="ci-release", keyid=KEYID, generation=2,
                                  reason="laptop stolen", compromised_since_us=T0 - 3600 * 10**6),
        "key-destroy": audit_entry(7, T0, KEY_DESTROY, keyid=KEYID),
        "agent-start": audit_entry(0, T0, AGENT_START, message="provsign 0.1.0"),
        "agent-stop": audit_entry(8, T0, AGENT_STOP),
        "policy-load": audit_entry(9, T0, POLICY_LOAD, message="/etc/provsign/agent.conf"),
        "empty": b"",
        "max-seq": audit_entry(2**64 - 1, -1, SIGN),
        "unknown-event": audit_entry(10, T0, 77),
        "negative-time": audit_entry(11, -T0, AGENT_START),
        "seq-twice": fv(1, 5) + fv(2, T0) + fv(1, 6),
        "caller-twice": audit_entry(12, T0, SIGN) + who + fm(4, fb(4, "/bin/sh")),
        "unknown-field": audit_entry(13, T0, AGENT_START) + fb(50, "later"),
        "pbc-overlong-field0-tag": audit_entry(14, T0, AGENT_START) + b"\x80\x00\x02",
    }
    return e


def record(entry):
    return be32(len(entry)) + entry + be32(crc32c(entry))


def configs():
    readme = """[agent]
socket = /run/provsign/agent.sock
socket_group = provsign-clients
state_dir = /var/lib/provsign
pkcs11_module = /usr/lib/softhsm/libsofthsm2.so
token_label = provsign
pin_file = /etc/provsign/pin
algorithm = ecdsa-p256

[principal ci-release]
uids = 1001 builder
gids = ci

[role operator]
uids = 0

[role auditor]
gids = audit
"""
    # docs/operations.md's, with users and groups every Debian system has
    resolvable = (readme.replace("provsign-clients", "adm").replace("builder", "daemon")
                  .replace("gids = ci", "gids = 1001, staff").replace("gids = audit", "gids = adm"))
    with open(os.path.join(TOP, "packaging", "agent.conf.example")) as f:
        packaging = f.read()
    every_key = """# every key of every section
[agent]
socket = /run/provsign/agent.sock
socket_group = 0
state_dir = /var/lib/provsign
pkcs11_module = /usr/lib/softhsm/libsofthsm2.so
token_label = provsign
pin_credential = pin
algorithm = ecdsa-p384
log_origin = build-host.example.com/provsign
key_namespace = build-host.example.com
checkpoint_every = 1000
checkpoint_interval = 1m
journal_events = all
rotate_after = 90d
auto_rotate_on_revoke = yes
max_connections = 1024
max_connections_per_uid = 128
max_inflight_per_connection = 16
idle_timeout = 5m
read_timeout = 10s
hsm_timeout = 5
rate_limit = 100/s
max_annotations = 32
max_annotation_bytes = 4096

[principal ci-release]
uids = 1001, 1002 root
gids = 0
algorithm = rsa-3072
rotate_after = 12h
rate_limit = 10/m

[principal nightly_build.v2]
uids =

[role operator]
uids = 0
gids = 0

[role auditor]
uids = root
"""
    c = {
        "readme": readme,
        "readme-resolvable": resolvable,
        "packaging-example": packaging,
        "every-key": every_key,
        "integration": ("[agent]\nsocket = /tmp/t/agent.sock\nsocket_group = 0\nstate_dir = /tmp/t/state\n"
                        "pkcs11_module = /usr/lib/softhsm/libsofthsm2.so\ntoken_label = provsign\n"
                        "pin_file = /tmp/t/tok/pin\nlog_origin = test.example/provsign\n\n"
                        "[principal ci-release]\nuids = 1001 1003\n\n[principal ci-nightly]\nuids = 1002\n"
                        "gids = 1003\nalgorithm = ecdsa-p384\n\n[principal ci-rsa]\nuids = 1001\n"
                        "algorithm = rsa-3072\n\n[role operator]\nuids = 1004\n\n[role auditor]\nuids = 1005\n"),
        "empty": "",
        "comments-only": "; nothing\n# here\n\n",
        "bom-crlf": "\ufeff[agent]\r\nsocket = /run/x.sock ; a comment\r\n",
        "indented": "[agent]\n    state_dir = /srv/provsign\n\tsocket = /run/p.sock\n",
        "colon": "[agent]\ntoken_label: provsign\n",
        "rate-off": "[agent]\nrate_limit = off\n[principal p]\nrate_limit = 4294967295/h\n",
        "sections-any-order": "[principal p]\n[role auditor]\n[agent]\nalgorithm = rsa-3072\n[role operator]\n",
        "duplicate-key": "[agent]\nsocket = /x\nsocket = /y\n",
        "duplicate-section": "[agent]\n[principal ci]\nuids = 1\n[principal ci]\n",
        "pin-both": "[agent]\npin_file = /etc/pin\npin_credential = pin\n",
        "nul-byte": b"[agent]\nsoc\0ket = /x\n",
        "long-line": "[agent]\nsocket = /" + "a" * 300 + "\n",
        "long-socket": "[agent]\nsocket = /" + "s" * 120 + "\n",
        "unknown-section": "[agent]\n[foo]\n",
        "missing-bracket": "[agent\n",
        "text-after-header": "[agent] x\n",
        "principal-log": "[principal log]\n",
        "principal-65": "[principal " + "p" * 65 + "]\n",
        "key-outside-section": "socket = /x\n",
        "bad-duration": "[agent]\nidle_timeout = 5w\n",
        "duration-overflow": "[agent]\nrotate_after = 18446744073709551615d\n",
        "bad-rate": "[agent]\nrate_limit = 0/s\n",
        "uid-range": "[role auditor]\nuids = 4294967295\n",
        "unknown-user": "[role operator]\nuids = 1abc provsign-nosuchuser\n",
        "relative-path": "[agent]\nstate_dir = var/lib\n",
        "bad-origin": "[agent]\nlog_origin = a+b\n",
        "key-namespace": "[agent]\nlog_origin = ci1.example.com/provsign\nkey_namespace = fleet_ci-1.a\n",
        "bad-namespace": "[agent]\nkey_namespace = ci/1\n",
        "origin-no-namespace": "[agent]\nlog_origin = host:8443/provsign\n",
        "credential-slash": "[agent]\npin_credential = ../pin\n",
        "no-newline-at-end": "[agent]\nsocket = /run/x.sock",
    }
    return c


def receipt_json(seq, time_text, leaf, tree_size, proof, note, whole=None):
    r = {"log_seq": seq, "log_time": time_text, "leaf": b64(leaf), "tree_size": tree_size,
         "inclusion_proof": [b64(h) for h in proof], "checkpoint": note}
    if whole:
        w = dict(whole)
        w["receipt"] = r
        r = w
    return json.dumps(r, indent=1).encode() + b"\n"


def bundle_keys(tmp, key):
    """The corpus test key plus freshly made P-256, P-384 and RSA-3072 keys:
    (algorithm, pem) pairs. The fresh ones change on every run (their
    meaning does not)."""
    out = [("ecdsa-p256", key.pem)]
    for alg, args in (("ecdsa-p256", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                      ("ecdsa-p384", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]),
                      ("rsa-3072", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"])):
        path = os.path.join(tmp, alg + ".pem")
        subprocess.run(["openssl", "genpkey", *args, "-out", path], check=True, capture_output=True)
        out.append((alg, subprocess.run(["openssl", "pkey", "-in", path, "-pubout"], check=True,
                                        capture_output=True).stdout.decode()))
    return out


def bundles(keys):
    """Key bundle payloads (proto/keybundle.h): the agent's shape and the
    ways a bundle can be wrong."""
    t = ["2026-11-25T18:20:0%d.123456Z" % i for i in range(10)]

    def k(i, principal, gen, state, **f):
        alg, pem = keys[i]
        o = {"keyid": hashlib.sha256(pem_to_der(pem)).hexdigest(), "principal": principal, "generation": gen,
             "algorithm": alg, "state": state, "created": t[i], "retired": None, "revoked": None,
             "reason": None, "compromised_since": None, "destroyed": None, "public_key_pem": pem}
        o.update(f)
        return o

    good_keys = [
        k(1, "ci-release", 1, "retired", retired=t[5]),
        k(0, "ci-release", 2, "active"),
        k(2, "ci-nightly", 1, "revoked", revoked=t[6], reason="laptop lost", compromised_since=t[4]),
        k(3, "ci-rsa", 1, "destroyed", retired=t[5], destroyed=t[7]),
    ]

    def b(ks, **f):
        o = {"version": 1, "origin": CORPUS_ORIGIN, "log_keyid": hashlib.sha256(b"log key").hexdigest(),
             "log_size": 42, "issued": t[9], "keys": ks}
        o.update(f)
        return json.dumps(o, separators=(",", ":")).encode()

    out = {
        "agent-shape": b(good_keys),
        "no-keys": b([]),
        "one-key": b(good_keys[1:2]),
        "duplicate-keyid": b([good_keys[1], dict(good_keys[1], generation=3)]),
        "keyid-not-of-pem": b([dict(good_keys[1], keyid=good_keys[0]["keyid"])]),
        "algorithm-mismatch": b([dict(good_keys[1], algorithm="ecdsa-p384")]),
        "revoked-no-compromise": b([dict(good_keys[2], compromised_since=None)]),
        "time-no-micros": b([dict(good_keys[1], created="2026-11-25T18:20:01Z")]),
        "time-feb-30": b([dict(good_keys[1], created="2026-02-30T18:20:01.123456Z")]),
        "generation-0": b([dict(good_keys[1], generation=0)]),
        "generation-2-32": b([dict(good_keys[1], generation=1 << 32)]),
        "state-unknown": b([dict(good_keys[1], state="paused")]),
        "reason-number": b([dict(good_keys[2], reason=7)]),
        "pem-garbage": b([dict(good_keys[1], public_key_pem="-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")]),
        "principal-empty": b([dict(good_keys[1], principal="")]),
        "keyid-uppercase": b([dict(good_keys[1], keyid=good_keys[1]["keyid"].upper())]),
        "version-2": b(good_keys, version=2),
        "log-size-negative": b(good_keys, log_size=-1),
        "keys-not-array": b({"0": good_keys[0]}),
        "key-not-object": b(["key"]),
        "not-object": b"[1, 2, 3]",
        "not-json": b'{"version": 1, "keys": [',
    }
    out["nul-in-principal"] = out["one-key"].replace(b'"principal":"ci-release"', b'"principal":"ci\\u0000release"')
    out["duplicate-member"] = out["one-key"].replace(b'{"version":1,', b'{"version":1,"version":1,')
    return out


def statements():
    """in-toto statements with SLSA v1 predicates (fuzz-statement.c)."""
    d1, d2 = sha256(b"widget").hex(), sha256(b"sums").hex()
    subj = [{"name": "dist/widget.tar.gz", "digest": {"sha256": d1}}, {"name": "dist/SHA256SUMS", "digest": {"sha256": d2}}]
    repo, ref, commit = "https://github.com/acme/widget", "refs/heads/main", "0123456789abcdef0123456789abcdef01234567"

    def st(bd=None, rd=None, subject=None, ptype="https://slsa.dev/provenance/v1", **extra):
        pred = {}
        if bd is not None:
            pred["buildDefinition"] = bd
        if rd is not None:
            pred["runDetails"] = rd
        d = {"_type": "https://in-toto.io/Statement/v1", "subject": subj if subject is None else subject,
             "predicateType": ptype, "predicate": pred}
        d.update(extra)
        return json.dumps(d)

    dep = [{"uri": "git+%s@%s" % (repo, ref), "digest": {"gitCommit": commit}}]
    gh_builder = {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}
    return {
        "github": st({"buildType": "https://actions.github.io/buildtypes/workflow/v1",
                      "externalParameters": {"workflow": {"ref": ref, "repository": repo, "path": ".github/workflows/r.yml"},
                                             "source": {"repository": repo, "ref": ref, "commit": commit}},
                      "resolvedDependencies": dep}, gh_builder),
        "gitlab": st({"buildType": "urn:provsign:buildtype:gitlab-ci:v1",
                      "externalParameters": {"pipeline": {"repository": "https://gitlab.example.com/acme/gadget"},
                                             "source": {"repository": "https://gitlab.example.com/acme/gadget",
                                                        "ref": "refs/tags/v2.0.1"}},
                      "resolvedDependencies": [{"uri": "git+https://gitlab.example.com/acme/gadget@refs/tags/v2.0.1"}]},
                     {"builder": {"id": "https://gitlab.example.com/acme/gadget/-/runners/17"}}),
        "github-workflow-only": st({"externalParameters": {"workflow": {"ref": ref, "repository": repo}},
                                    "resolvedDependencies": dep}, gh_builder),
        "dependency-only": st({"resolvedDependencies": [{"uri": "https://example.com/tool"}] + dep}, gh_builder),
        "dependency-no-ref": st({"resolvedDependencies": [{"uri": "git+" + repo}]}, gh_builder),
        "dependency-at-end": st({"resolvedDependencies": [{"uri": "git+" + repo + "@"}]}, gh_builder),
        "two-sources": st({"externalParameters": {"source": {"repository": repo, "ref": "refs/heads/evil"}},
                           "resolvedDependencies": dep}, gh_builder),
        "ref-not-string": st({"externalParameters": {"source": {"repository": repo, "ref": 7}}}, gh_builder),
        "builder-id-number": st({}, {"builder": {"id": 1}}),
        "builder-not-object": st({}, {"builder": "x"}),
        "deps-not-list": st({"resolvedDependencies": {"uri": "git+x"}}, gh_builder),
        "other-predicate": st({"externalParameters": {"source": {"repository": repo}}}, gh_builder,
                              ptype="https://example.com/test/v1"),
        "no-predicate-type": json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": subj}),
        "no-subjects": st(subject=[]),
        "short-digest": st(subject=[{"name": "a", "digest": {"sha256": "abc"}}]),
        "digest-other-alg": st(subject=[{"digest": {"sha512": "00" * 64}}]),
        "nul-in-name": st(subject=[{"name": "a\u0000b", "digest": {"sha256": d1}}]),
        "statement-v0.1": json.dumps({"_type": "https://in-toto.io/Statement/v0.1", "subject": subj}),
        "duplicate-key": '{"_type":"https://in-toto.io/Statement/v1","_type":"x","subject":[]}',
        "not-json": "{",
        "array": "[]",
    }


def policies():
    """Deploy policy files (fuzz-policy.c, docs/deploy-policy.md)."""
    return {
        "deploy": """; deploy policy
[artifact "dist/*.tar.gz"]
principals = ci-release
source_uri = https://github.com/acme/widget
source_refs = refs/heads/main, refs/heads/release/*
builder_ids = https://github.com/actions/runner/github-hosted
max_age = 30d
require_receipt = yes

[artifact dist/SHA256SUMS]
source_uri_prefix = https://github.com/acme/

[artifact "gl/*"]
  principals = ci-release ci-nightly
  source_refs = refs/tags/v*
""",
        "empty": "",
        "comment-only": "; nothing\n# here\n",
        "empty-section": "[artifact \"*\"]\n",
        "unknown-key": "[artifact \"*\"]\nsource_branch = main\n",
        "unknown-section": "[agent]\nprincipals = a\n",
        "duplicate-section": "[artifact a]\nprincipals = a\n[artifact a]\nprincipals = b\n",
        "duplicate-key": "[artifact a]\nprincipals = a\nprincipals = b\n",
        "bad-duration": "[artifact a]\nmax_age = -1d\n",
        "bad-bool": "[artifact a]\nrequire_receipt = maybe\n",
        "quote-in-pattern": "[artifact \"a\"b\"]\nprincipals = a\n",
        "long-section": "[artifact \"%s\"]\nprincipals = a\n" % ("x" * 180),
        "long-line": "[artifact a]\nprincipals = %s\n" % ("p " * 200),
        "empty-list": "[artifact a]\nprincipals = , ,\n",
        "key-outside": "principals = a\n",
        "nul": "[artifact a]\nprincipals = a\x00b\n",
        "bom-crlf": "\ufeff[artifact a]\r\nprincipals = a\r\n",
        "continuation": "[artifact a]\nprincipals = a\n  b = c\n",
    }


def main():
    with open(os.path.join(TOP, "tests", "vectors", "tlog.json")) as f:
        vec = json.load(f)
    tlog_note = vec["checkpoint"]
    tlog_spki = pem_to_der(vec["ecdsa_public_key_pem"])
    tlog_text, tlog_sigs = tlog_note.split("\n\n", 1)
    tlog_text += "\n"
    tlog_lines = tlog_sigs.splitlines(keepends=True)
    tlog_name = tlog_lines[1].split(" ")[1]

    with tempfile.TemporaryDirectory() as tmp:
        key = TestKey(tmp)
        write_keys_header(tlog_spki, tlog_name, key)

        # -- frame: receive buffers
        clean("frame")
        status = requests()["status"]
        sign = requests()["sign"]
        write("frame", "empty", b"")
        write("frame", "partial-header", b"\x00\x00\x00")
        write("frame", "len0", be32(0))
        write("frame", "len1", be32(1) + b"\x08")
        write("frame", "status", be32(len(status)) + status)
        write("frame", "sign-then-status", be32(len(sign)) + sign + be32(len(status)) + status)
        write("frame", "len65536-header-only", be32(65536) + b"\x08\x01")
        write("frame", "len65537", be32(65537) + b"\x08\x01")
        write("frame", "len-ffffffff", be32(0xFFFFFFFF))
        write("frame", "truncated-payload", be32(100) + sign[:10])
        write("frame", "status-then-oversize", be32(len(status)) + status + be32(1 << 20))

        # -- request: Request payloads, every type and the edges
        clean("request")
        for name, b in requests().items():
            write("request", name, b)

        # -- audit-entry
        clean("audit-entry")
        entries = audit_entries(key.spki)
        for name, b in entries.items():
            write("audit-entry", name, b)

        # -- record: segment files
        clean("record")
        seg = b"".join(record(entries[n]) for n in ("agent-start", "sign", "key-create", "refused"))
        write("record", "empty", b"")
        write("record", "one", record(entries["agent-start"]))
        write("record", "segment", seg)
        write("record", "torn-tail", seg + record(entries["sign"])[:-3])
        write("record", "torn-length", seg + b"\x00\x00")
        bad = bytearray(record(entries["sign"]))
        bad[10] ^= 0x01
        write("record", "crc-mismatch", record(entries["agent-start"]) + bytes(bad))
        write("record", "crc-mismatch-last", seg[:-1] + bytes([seg[-1] ^ 0x80]))
        write("record", "zero-tail", seg + b"\x00" * 8)
        write("record", "len65537", be32(65537) + b"\x00" * 16)
        write("record", "len-ffffffff", be32(0xFFFFFFFF))
        write("record", "one-byte-entry", record(b"\x08"))
        write("record", "not-an-entry", record(b"\xff\xff\xff"))

        # -- statement: in-toto statements (SLSA v1)
        clean("statement")
        for name, text in statements().items():
            write("statement", name, text)

        # -- policy: verify --policy files
        clean("policy")
        for name, text in policies().items():
            write("policy", name, text)

        # -- config: agent.conf files
        clean("config")
        for name, text in configs().items():
            write("config", name, text)

        # -- checkpoint: note texts
        clean("checkpoint")
        root = sha256(b"a root")
        write("checkpoint", "tlog-vector", tlog_text)
        write("checkpoint", "size0", "example.com/log\n0\n%s\n" % b64(sha256(b"")))
        write("checkpoint", "extensions", tlog_text + "ext one\nanother extension\n")
        write("checkpoint", "u64-max", "o\n18446744073709551615\n%s\n" % b64(root))
        write("checkpoint", "u64-max-plus-1", "o\n18446744073709551616\n%s\n" % b64(root))
        write("checkpoint", "leading-zero", "o\n013\n%s\n" % b64(root))
        write("checkpoint", "plus-sign", "o\n+13\n%s\n" % b64(root))
        noncanon = b64(root)[:-2] + ("B" if b64(root)[-2] == "A" else "A") + "="
        write("checkpoint", "root-noncanonical", "o\n13\n%s\n" % noncanon)
        write("checkpoint", "root-33-bytes", "o\n13\n%s\n" % b64(root + b"\x00"))
        write("checkpoint", "root-unpadded", "o\n13\n%s\n" % b64(root).rstrip("="))
        write("checkpoint", "no-final-newline", tlog_text[:-1])
        write("checkpoint", "empty-origin", "\n13\n%s\n" % b64(root))
        write("checkpoint", "empty-extension", tlog_text + "\n")
        write("checkpoint", "utf8-origin", "caf\u00e9.example/\u65e5\u672c\n1\n%s\n" % b64(root))
        write("checkpoint", "control-char", "o\x01\n1\n%s\n" % b64(root))
        write("checkpoint", "two-lines", "o\n1\n")

        # -- note: signed notes
        clean("note")
        corpus_text = "%s\n3\n%s\n" % (CORPUS_ORIGIN, b64(root))
        corpus_note = signed_note(key, CORPUS_ORIGIN, corpus_text)
        write("note", "tlog-vector", tlog_note)
        write("note", "tlog-ecdsa-only", tlog_text + "\n" + tlog_lines[1])
        write("note", "tlog-ed25519-only", tlog_text + "\n" + tlog_lines[0])
        bad = tlog_lines[1][:-6] + ("A" if tlog_lines[1][-6] != "A" else "B") + tlog_lines[1][-5:]
        write("note", "tlog-bad-signature", tlog_text + "\n" + tlog_lines[0] + bad)
        write("note", "tlog-other-name", tlog_note.replace(tlog_name + " ", "example.com/other ", 1))
        write("note", "corpus-key", corpus_note)
        write("note", "corpus-key-extensions",
              signed_note(key, CORPUS_ORIGIN, corpus_text + "extension line\n"))
        write("note", "corpus-key-and-tlog", corpus_note + tlog_lines[1])
        write("note", "no-blank-line", tlog_text + tlog_lines[1])
        write("note", "no-signatures", tlog_text + "\n")
        write("note", "blank-line-in-text", "a\n\nb\n\n" + tlog_lines[1])
        write("note", "sig-no-space", tlog_text + "\n\u2014 name\n")
        write("note", "sig-4-bytes", tlog_text + "\n\u2014 name %s\n" % b64(b"\x01\x02\x03\x04"))
        write("note", "sig-unpadded", tlog_text + "\n\u2014 name %s\n" % b64(b"12345").rstrip("="))
        write("note", "name-with-plus", tlog_text + "\n\u2014 a+b %s\n" % b64(b"123456"))
        write("note", "name-nbsp", tlog_text + "\n\u2014 a\u00a0b %s\n" % b64(b"123456"))
        write("note", "overlong-utf8", tlog_text.encode() + b"\n\xe2\x80\x94 a\xc0\xaf %s\n" % b64(b"123456").encode())
        write("note", "101-signatures", tlog_text + "\n" + "".join(sig_line("k%d" % i, b"k", b"sig") for i in range(101)))
        write("note", "100-signatures", tlog_text + "\n" + "".join(sig_line("k%d" % i, b"k", b"sig") for i in range(100)))

        # -- receipt: receipt JSON (client/receipt-json.h)
        clean("receipt")
        leaves = [
            audit_entry(0, T0 - 10**6, AGENT_START, message="provsign 0.1.0"),
            audit_entry(1, T0, SIGN, caller=caller(1001, 1001, 4242, "/usr/bin/provsign"), principal="ci-release",
                        keyid=KEYID, digest_algorithm=SHA256, digest=DIGEST, generation=1, algorithm=ECDSA_P256),
            audit_entry(2, T0 + 10**6, SIGN, principal="ci-release", keyid=KEYID, digest_algorithm=SHA256,
                        digest=DIGEST),
        ]
        root3 = mth(leaves)
        cp3 = signed_note(key, CORPUS_ORIGIN, "%s\n3\n%s\n" % (CORPUS_ORIGIN, b64(root3)))
        root1 = mth(leaves[:1])
        cp1 = signed_note(key, CORPUS_ORIGIN, "%s\n1\n%s\n" % (CORPUS_ORIGIN, b64(root1)))
        whole = {"keyid": KEYID, "algorithm": "ecdsa-p256", "sig": b64(b"\x30\x06\x02\x01\x01\x02\x01\x01"),
                 "principal": "ci-release", "generation": 1}
        good = receipt_json(1, T0_TEXT, leaves[1], 3, inclusion(1, leaves), cp3)
        write("receipt", "verified", good)
        write("receipt", "verified-whole", receipt_json(1, T0_TEXT, leaves[1], 3, inclusion(1, leaves), cp3, whole))
        write("receipt", "verified-last-leaf",
              receipt_json(2, "2026-11-25T18:20:02.123456Z", leaves[2], 3, inclusion(2, leaves), cp3))
        write("receipt", "entry-not-sign", receipt_json(0, "2026-11-25T18:20:00.123456Z", leaves[0], 1, [], cp1))
        write("receipt", "signer-mismatch", receipt_json(1, T0_TEXT, leaves[1], 3, inclusion(1, leaves), cp3,
                                                         dict(whole, principal="ci-nightly")))
        write("receipt", "wrong-tree-size", receipt_json(1, T0_TEXT, leaves[1], 4, inclusion(1, leaves), cp3))
        write("receipt", "wrong-proof", receipt_json(1, T0_TEXT, leaves[1], 3, inclusion(2, leaves), cp3))
        write("receipt", "seq-outside-tree", receipt_json(5, T0_TEXT, leaves[1], 3, inclusion(1, leaves), cp3))
        write("receipt", "wrong-time", receipt_json(1, "2026-11-25T18:20:01.000000Z", leaves[1], 3,
                                                    inclusion(1, leaves), cp3))
        write("receipt", "tlog-checkpoint", receipt_json(3, T0_TEXT, b"entry-3", 13, [sha256(b"x")] * 4, tlog_note))
        write("receipt", "bad-time", receipt_json(1, "2026-02-30T18:20:01.123456Z", leaves[1], 3,
                                                  inclusion(1, leaves), cp3))
        write("receipt", "leaf-noncanonical-b64", good.replace(b64(leaves[1]).encode()[-4:], b"AB=="))
        write("receipt", "duplicate-key", b'{"log_seq": 1, "log_seq": 2}')
        write("receipt", "nul-in-checkpoint", good.replace(b'"checkpoint": "', b'"checkpoint": "\\u0000'))
        write("receipt", "proof-65-hashes", receipt_json(1, T0_TEXT, leaves[1], 3, [root3] * 65, cp3))
        write("receipt", "negative-seq", good.replace(b'"log_seq": 1', b'"log_seq": -1'))
        write("receipt", "not-an-object", b"[1, 2, 3]")
        write("receipt", "not-json", b"{\"log_seq\": ")
        write("receipt", "receipt-not-object", b'{"keyid": "x", "principal": "y", "receipt": 5}')

        # -- bundle: key bundle payloads (client/keyrule.h)
        clean("bundle")
        for name, text in bundles(bundle_keys(tmp, key)).items():
            write("bundle", name, text)

        # -- reply: a call and the agent's answer to it (fuzz-reply.c)
        clean("reply")
        for name, b in replies(key).items():
            write("reply", name, b)

    total = 0
    for d, _, files in os.walk(CORPUS):
        total += sum(os.path.getsize(os.path.join(d, f)) for f in files)
    print("corpus: %d bytes" % total, file=sys.stderr)


if __name__ == "__main__":
    main()
