# Helpers of the retention tests (test-retention, test-purge-crash); sourced
# after common.sh, with LOG (the log directory) and PUB (publish_dir) set.

# split_log: the newest segment is cut before its last entry into two, as
# the writer does when a segment is full (the segments' names carry their
# first entry); the older becomes a closed segment.
split_log() {
        python3 - "$LOG" <<'PY'
import os, struct, sys
d = sys.argv[1]
segs = sorted(f for f in os.listdir(d) if f.endswith(".seg"))
name = segs[-1]
buf = open(os.path.join(d, name), "rb").read()
off, offs = 0, []
while off < len(buf):
    n = struct.unpack(">I", buf[off:off + 4])[0]
    offs.append(off)
    off += 4 + n + 4
first = int(name[:20])
cut = offs[-1]
st = os.stat(os.path.join(d, name))
new = os.path.join(d, "%020d.seg" % (first + len(offs) - 1))
with open(new, "wb") as f:
    f.write(buf[cut:])
os.chown(new, st.st_uid, st.st_gid)
os.chmod(new, 0o600)
os.truncate(os.path.join(d, name), cut)
print(first + len(offs) - 1)
PY
}

# has_bytes HEX: the raw bytes are somewhere in the segment files
has_bytes() {
        python3 - "$LOG" "$1" <<'PY'
import os, sys
d, h = sys.argv[1], bytes.fromhex(sys.argv[2])
sys.exit(0 if any(h in open(os.path.join(d, f), "rb").read() for f in os.listdir(d) if f.endswith(".seg")) else 1)
PY
}
no_bytes() {
        ! has_bytes "$1"
}
# in_bundles HEX: the raw bytes are in a published entry bundle
in_bundles() {
        python3 - "$PUB/tile/entries" "$1" <<'PY'
import os, sys
h = bytes.fromhex(sys.argv[2])
sys.exit(0 if any(h in open(os.path.join(r, f), "rb").read() for r, _, fs in os.walk(sys.argv[1]) for f in fs) else 1)
PY
}
not_in_bundles() {
        ! in_bundles "$1"
}
# index_rows SQL: an answer of the index file (the agent stopped)
index_rows() {
        python3 -c 'import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?immutable=1", uri=True)
print(db.execute(sys.argv[2]).fetchone()[0])' "$T/state/index.sqlite" "$1"
}
