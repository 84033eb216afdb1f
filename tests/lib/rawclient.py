"""Speaks the provsign frame protocol by hand, for tests that must send what
no well-behaved client would. Encodes just enough protobuf to build
requests, and decodes a Response's status and message."""
import socket
import struct

STATUS = ["OK", "INVALID_ARGUMENT", "PERMISSION_DENIED", "NOT_FOUND", "KEY_REVOKED",
          "NO_ACTIVE_KEY", "RATE_LIMITED", "HSM_UNAVAILABLE", "UNAVAILABLE", "INTERNAL"]


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def field_bytes(num, b):
    return varint(num << 3 | 2) + varint(len(b)) + b


def request(body_field, body=b""):
    return field_varint(1, 1) + field_bytes(body_field, body)


def status_request():
    return request(12)


def sign_request(principal, digest, alg=1, payload_type=b"", annotations=()):
    body = field_bytes(1, principal.encode()) + field_varint(2, alg) + field_bytes(3, digest)
    if payload_type:
        body += field_bytes(4, payload_type)
    for k, v in annotations:
        body += field_bytes(5, field_bytes(1, k) + field_bytes(2, v))
    return request(10, body)


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_varint(b, i):
    shift = v = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def decode_response(payload):
    """Top-level fields of a Response: returns (status name, message, field numbers)."""
    status, message, fields, i = 0, "", [], 0
    while i < len(payload):
        key, i = read_varint(payload, i)
        num, wt = key >> 3, key & 7
        fields.append(num)
        if wt == 0:
            v, i = read_varint(payload, i)
            if num == 2:
                status = v
        elif wt == 2:
            n, i = read_varint(payload, i)
            if num == 3:
                message = payload[i:i + n].decode()
            i += n
        else:
            raise ValueError("unexpected wire type %d" % wt)
    return STATUS[status] if status < len(STATUS) else str(status), message, fields


def read_response(s):
    hdr = recv_exact(s, 4)
    if hdr is None:
        return None
    (n,) = struct.unpack(">I", hdr)
    payload = recv_exact(s, n)
    if payload is None:
        return None
    return decode_response(payload)


def closed(s):
    """True when the peer has closed the connection."""
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


# Every request type, by its oneof field number in proto/provsign.proto,
# with a body that passes validation (so only the permission check decides).
KEYID_ZERO = "0" * 64


def all_requests(principal):
    return {
        "Sign": request(10, field_bytes(1, principal.encode()) + field_varint(2, 1) + field_bytes(3, b"\x07" * 32)),
        "GetPublicKey": request(11, field_bytes(1, principal.encode())),
        "Status": request(12),
        "ListKeys": request(13),
        "GetKeyBundle": request(14),
        "GetCheckpoint": request(15),
        "GetLogKey": request(16),
        "RotateKey": request(17, field_bytes(1, principal.encode())),
        "RevokeKey": request(18, field_bytes(1, KEYID_ZERO.encode()) + field_bytes(2, b"test")),
        "DestroyKey": request(19, field_bytes(1, KEYID_ZERO.encode())),
        "Export": request(20),
        "Find": request(21),
        "Proof": request(22),
    }


def call(path, payload):
    s = connect(path)
    try:
        s.sendall(frame(payload))
        return read_response(s)
    finally:
        s.close()


def fields(payload):
    """Every field of one message: {number: [value, ...]}, varints as ints,
    length-delimited fields as bytes."""
    out, i = {}, 0
    while i < len(payload):
        key, i = read_varint(payload, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(payload, i)
        elif wt == 2:
            n, i = read_varint(payload, i)
            v = payload[i:i + n]
            i += n
        else:
            raise ValueError("unexpected wire type %d" % wt)
        out.setdefault(num, []).append(v)
    return out


def call_raw(path, payload):
    """Sends one request; returns the Response's raw payload bytes."""
    s = connect(path)
    try:
        s.sendall(frame(payload))
        hdr = recv_exact(s, 4)
        (n,) = struct.unpack(">I", hdr)
        return recv_exact(s, n)
    finally:
        s.close()


def key_bundle(path):
    """GetKeyBundle: (envelope text, number of frames it came in). The
    envelope arrives in parts, GetKeyBundleResponse.more set on all but the
    last; a refusal raises RuntimeError("STATUS: message")."""
    s = connect(path)
    try:
        s.sendall(frame(request(14, field_varint(2, 1))))  # in_parts
        parts = []
        while True:
            hdr = recv_exact(s, 4)
            if hdr is None:
                raise RuntimeError("the agent closed the connection after %d parts" % len(parts))
            resp = fields(recv_exact(s, struct.unpack(">I", hdr)[0]))
            status = resp.get(2, [0])[0]
            if status != 0:
                raise RuntimeError("%s: %s" % (STATUS[status], resp.get(3, [b""])[0].decode()))
            body = fields(resp[16][0])
            parts.append(body.get(1, [b""])[0].decode())
            if not body.get(2, [0])[0]:
                return "".join(parts), len(parts)
    finally:
        s.close()


if __name__ == "__main__":
    # rawclient.py bundle [--parts]: prints the key bundle envelope
    # ($PROVSIGN_AGENT_SOCK); with --parts, "parts: N" (frames) on stderr.
    import os
    import sys
    if sys.argv[1:] not in (["bundle"], ["bundle", "--parts"]):
        sys.exit("usage: rawclient.py bundle [--parts]")
    try:
        envelope, n = key_bundle(os.environ["PROVSIGN_AGENT_SOCK"])
    except RuntimeError as e:
        sys.exit(str(e))
    if len(sys.argv) == 3:
        print("parts: %d" % n, file=sys.stderr)
    print(envelope)


def with_id(req, rid):
    """A request with Request.request_id (field 25) set: pipelining."""
    return req + field_varint(25, rid)


def read_fields(s):
    """The next Response's fields (fields()), or None when the agent closed."""
    hdr = recv_exact(s, 4)
    if hdr is None:
        return None
    payload = recv_exact(s, struct.unpack(">I", hdr)[0])
    return fields(payload) if payload is not None else None
