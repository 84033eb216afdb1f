"""The objects of one key namespace in a `pkcs11-tool --list-objects` listing
(stdin), one block per object (its header line and attribute lines, as
pkcs11-tool printed them), sorted: a canonical text to compare before and
after. Objects belong to NAMESPACE when their label starts with
provsign/NAMESPACE/. With --legacy instead of a namespace: the objects whose
label is a first-round one, provsign/<owner>/<generation>.
Usage: p11objects.py NAMESPACE|--legacy"""
import re
import sys

want = sys.argv[1]
blocks, cur = [], None
for line in sys.stdin.read().splitlines():
    if not line.strip():
        continue
    if not line.startswith((" ", "\t")):
        # ("Data object 11": a handle of this session, not the object's)
        cur = [re.sub(r"^(Data object) [0-9]+$", r"\1", line)]
        blocks.append(cur)
    elif cur is not None:
        cur.append(line)


def label(block):
    for l in block[1:]:
        m = re.match(r"\s*label:\s*'?(.*?)'?\s*$", l)
        if m:
            return m.group(1)
    return ""


def ours(lab):
    if want == "--legacy":
        return re.fullmatch(r"provsign/[^/]+/[1-9][0-9]{0,8}", lab) is not None
    return lab.startswith("provsign/%s/" % want)


out = sorted("\n".join(b) for b in blocks if ours(label(b)))
sys.stdout.write("".join(b + "\n--\n" for b in out))
