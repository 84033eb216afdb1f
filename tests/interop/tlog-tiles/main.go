// tlog-tiles-check: reads a directory published by provsign-agent
// (publish_dir, C2SP tlog-tiles) with an implementation that is not
// provsign's: Go's golang.org/x/mod/sumdb/tlog. It checks, against the root
// of the published checkpoint:
//
//   - the tree hash computed from the tiles (tlog.TileHashReader checks
//     every tile it reads against that root);
//   - an inclusion proof (tlog.ProveRecord, tlog.CheckRecord) for every
//     entry of an `provsign audit export` JSON-lines file (-export), the
//     leaf hashed here from the exported entry bytes, and for sampled
//     leaves otherwise;
//   - consistency proofs (tlog.ProveTree, tlog.CheckTree) from an older
//     checkpoint (-previous) and from sampled older sizes;
//   - with -entries, the entry bundles (tile/entries/<N>, each entry a
//     big-endian uint16 length and its bytes): every entry of the tree is
//     there and hashes to its leaf in the (authenticated) level-0 tiles,
//     or is the stub of a purged entry (retention) carrying that leaf hash.
//
// The checkpoint's signature is not checked here (Go's note package knows
// Ed25519 only; the log key is ECDSA P-256): provsign audit verify does that.
//
//	tlog-tiles-check [-export FILE] [-previous CHECKPOINT] [-entries] DIR
//
// Exit 0: everything holds; 1: a check failed (said on stderr); 2: usage.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

const tileHeight = 8

// dirTiles serves tiles from the published directory. Go names a tile
// tile/<H>/<L>/<N>; C2SP tlog-tiles drops the height: tile/<L>/<N>.
type dirTiles struct {
	dir   string
	reads int
}

func (d *dirTiles) Height() int { return tileHeight }

func (d *dirTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p := strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", tileHeight))
		data, err := os.ReadFile(filepath.Join(d.dir, "tile", p))
		if err != nil {
			return nil, err
		}
		if len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("tile/%s: %d bytes, want %d", p, len(data), t.W*tlog.HashSize)
		}
		out[i] = data
		d.reads++
	}
	return out, nil
}

func (d *dirTiles) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// readCheckpoint parses the C2SP tlog-checkpoint text of a signed note:
// origin, size, base64 root.
func readCheckpoint(path string) (origin string, size int64, root tlog.Hash, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.SplitN(string(data), "\n", 4)
	if len(lines) < 4 {
		err = errors.New(path + ": not a checkpoint")
		return
	}
	origin = lines[0]
	if size, err = strconv.ParseInt(lines[1], 10, 64); err != nil {
		return
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		err = fmt.Errorf("%s: bad root hash", path)
		return
	}
	copy(root[:], h)
	return
}

func check(size int64, root tlog.Hash, hr tlog.HashReader, i int64, leaf tlog.Hash) error {
	p, err := tlog.ProveRecord(size, i, hr)
	if err != nil {
		return fmt.Errorf("ProveRecord(%d, %d): %v", size, i, err)
	}
	if err := tlog.CheckRecord(p, size, root, i, leaf); err != nil {
		return fmt.Errorf("CheckRecord(%d, %d): %v", size, i, err)
	}
	return nil
}

func checkOld(size int64, root tlog.Hash, hr tlog.HashReader, m int64, oldRoot tlog.Hash) error {
	p, err := tlog.ProveTree(size, m, hr)
	if err != nil {
		return fmt.Errorf("ProveTree(%d, %d): %v", size, m, err)
	}
	if err := tlog.CheckTree(p, size, root, m, oldRoot); err != nil {
		return fmt.Errorf("CheckTree(%d, %d): %v", size, m, err)
	}
	return nil
}

// stubLeafHash: the leaf hash a purged entry's stub carries: provsign's
// AuditEntry with event (field 3) ENTRY_PURGED (11) and purged_leaf_hash
// (field 21, 32 bytes), read with a minimal protobuf wire-format parser.
func stubLeafHash(b []byte) (tlog.Hash, bool) {
	var h tlog.Hash
	var event uint64
	have := false
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return h, false
		}
		b = b[n:]
		switch key & 7 {
		case 0:
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return h, false
			}
			b = b[n:]
			if key>>3 == 3 {
				event = v
			}
		case 1, 5:
			w := 8
			if key&7 == 5 {
				w = 4
			}
			if len(b) < w {
				return h, false
			}
			b = b[w:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return h, false
			}
			v := b[n : n+int(l)]
			b = b[n+int(l):]
			if key>>3 == 21 && len(v) == len(h) {
				copy(h[:], v)
				have = true
			}
		default:
			return h, false
		}
	}
	return h, event == 11 && have
}

// checkBundles reads every entry bundle of a tree of size entries and
// compares each entry's record hash with the leaf hash from the tiles (a
// purged entry's stub: the leaf hash it carries). It returns the entries
// read and how many of them were stubs.
func checkBundles(dir string, size int64, hr tlog.HashReader) (int64, int64, error) {
	var i, stubs int64
	for n := int64(0); n*256 < size; n++ {
		w := size - n*256
		if w > 256 {
			w = 256
		}
		p := strings.TrimPrefix(tlog.Tile{H: tileHeight, L: 0, N: n, W: int(w)}.Path(), fmt.Sprintf("tile/%d/0/", tileHeight))
		name := filepath.Join(dir, "tile", "entries", p)
		data, err := os.ReadFile(name)
		if err != nil {
			return i, stubs, err
		}
		for k := int64(0); k < w; k++ {
			if len(data) < 2 {
				return i, stubs, fmt.Errorf("%s: entry %d missing", name, k)
			}
			l := int(data[0])<<8 | int(data[1])
			if len(data) < 2+l {
				return i, stubs, fmt.Errorf("%s: entry %d truncated", name, k)
			}
			hs, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
			if err != nil {
				return i, stubs, err
			}
			if e := data[2 : 2+l]; tlog.RecordHash(e) != hs[0] {
				if h, ok := stubLeafHash(e); !ok || h != hs[0] {
					return i, stubs, fmt.Errorf("%s: entry %d (log entry %d) does not hash to its leaf", name, k, i)
				}
				stubs++
			}
			data = data[2+l:]
			i++
		}
		if len(data) != 0 {
			return i, stubs, fmt.Errorf("%s: %d bytes after the last entry", name, len(data))
		}
	}
	return i, stubs, nil
}

func run() error {
	export := flag.String("export", "", "provsign audit export JSON lines: prove every entry")
	previous := flag.String("previous", "", "an older checkpoint of the same log: prove consistency")
	entries := flag.Bool("entries", false, "check the entry bundles tile/entries/<N> against the leaves")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: tlog-tiles-check [-export FILE] [-previous CHECKPOINT] DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	origin, size, root, err := readCheckpoint(filepath.Join(dir, "checkpoint"))
	if err != nil {
		return err
	}
	tiles := &dirTiles{dir: dir}
	hr := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, tiles)
	th, err := tlog.TreeHash(size, hr)
	if err != nil {
		return fmt.Errorf("tree hash from the tiles: %v", err)
	}
	if th != root {
		return fmt.Errorf("the tiles hash to %v, the checkpoint says %v", th, root)
	}

	proved := 0
	if *export != "" {
		f, err := os.Open(*export)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var e struct {
				Seq  *int64 `json:"seq"`
				Leaf string `json:"leaf"`
			}
			if json.Unmarshal(sc.Bytes(), &e) != nil || e.Seq == nil || e.Leaf == "" {
				continue // the export's checkpoint and proof lines
			}
			if *e.Seq >= size {
				continue // after the published checkpoint
			}
			leaf, err := base64.StdEncoding.DecodeString(e.Leaf)
			if err != nil {
				return fmt.Errorf("entry %d: bad leaf", *e.Seq)
			}
			if err := check(size, root, hr, *e.Seq, tlog.RecordHash(leaf)); err != nil {
				return fmt.Errorf("entry %d from the export: %v", *e.Seq, err)
			}
			proved++
		}
		if err := sc.Err(); err != nil {
			return err
		}
	}

	// Sampled leaves, read from the level-0 tiles (authenticated by the
	// tree hash reader), and sampled older sizes.
	rnd := rand.New(rand.NewSource(15))
	var samples []int64
	if size > 0 {
		samples = []int64{0, size - 1, size / 2}
		for k := 0; k < 64; k++ {
			samples = append(samples, rnd.Int63n(size))
		}
	}
	for _, i := range samples {
		if i < 0 || i >= size {
			continue
		}
		hs, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
		if err != nil {
			return fmt.Errorf("leaf %d: %v", i, err)
		}
		if err := check(size, root, hr, i, hs[0]); err != nil {
			return err
		}
		m := i + 1
		oldRoot, err := tlog.TreeHash(m, hr)
		if err != nil {
			return fmt.Errorf("tree hash at %d: %v", m, err)
		}
		if err := checkOld(size, root, hr, m, oldRoot); err != nil {
			return err
		}
	}

	bundled := ""
	if *entries {
		n, stubs, err := checkBundles(dir, size, hr)
		if err != nil {
			return err
		}
		bundled = fmt.Sprintf(", %d entries in bundles match their leaves (%d purged stubs)", n, stubs)
	}

	consistent := ""
	if *previous != "" {
		porigin, psize, proot, err := readCheckpoint(*previous)
		if err != nil {
			return err
		}
		if porigin != origin {
			return fmt.Errorf("%s is of log %q, not %q", *previous, porigin, origin)
		}
		if psize > size {
			return fmt.Errorf("%s (size %d) is newer than the published checkpoint (%d)", *previous, psize, size)
		}
		if err := checkOld(size, root, hr, psize, proot); err != nil {
			return fmt.Errorf("the published tree does not extend %s: %v", *previous, err)
		}
		consistent = fmt.Sprintf(", consistent with the checkpoint of %d entries", psize)
	}
	fmt.Printf("%s: %d entries, root %v: tree hash, %d exported entries and %d sampled proofs hold%s%s (%d tiles read)\n",
		origin, size, root, proved, len(samples), bundled, consistent, tiles.reads)
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tlog-tiles-check:", err)
		os.Exit(1)
	}
}
