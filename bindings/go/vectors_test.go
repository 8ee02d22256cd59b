// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The shared conformance vectors (tests/vectors/README.md), relative to bindings/go.
const vectorsDir = "../../tests/vectors"

type vector struct {
	name, input, parent string
	diffID              DiffID
	chainID             ChainID
	err                 string
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	f, err := os.Open(filepath.Join(vectorsDir, "vectors.tsv"))
	if err != nil {
		t.Fatalf("the shared vectors: %v", err)
	}
	defer f.Close()
	var out []vector
	sc := bufio.NewScanner(f)
	header := true
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cols := strings.Split(line, "\t")
		if header {
			want := []string{"name", "input", "parent", "diff_id", "chain_id", "error"}
			if strings.Join(cols, ",") != strings.Join(want, ",") {
				t.Fatalf("vectors.tsv header is %q, want %q", cols, want)
			}
			header = false
			continue
		}
		if len(cols) != 6 {
			t.Fatalf("vectors.tsv: %d columns in %q", len(cols), line)
		}
		dash := func(s string) string {
			if s == "-" {
				return ""
			}
			return s
		}
		out = append(out, vector{cols[0], cols[1], dash(cols[2]), DiffID(dash(cols[3])), ChainID(dash(cols[4])), dash(cols[5])})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("vectors.tsv has no rows")
	}
	return out
}

func TestVectors(t *testing.T) {
	vectors := loadVectors(t)
	forEachDriver(t, func(t *testing.T, driver string) {
		s := openStore(t, driver)
		layers := map[string]Layer{} // by row name, for later rows' parents
		var order []Layer
		for _, v := range vectors {
			data, err := os.ReadFile(filepath.Join(vectorsDir, "data", v.input))
			if err != nil {
				t.Fatalf("%s: %v", v.name, err)
			}
			var parent ChainID
			switch {
			case v.parent == "":
			case strings.HasPrefix(v.parent, "sha256:"):
				parent = ChainID(v.parent)
			default:
				p, ok := layers[v.parent]
				if !ok {
					t.Fatalf("%s: parent row %q did not register", v.name, v.parent)
				}
				parent = p.ChainID()
			}
			l, err := s.Register(bytes.NewReader(data), parent)
			if v.err != "" {
				if err == nil {
					t.Errorf("%s: registered as %s, want %s", v.name, l.ChainID(), v.err)
					s.Release(l)
					continue
				}
				if got := codeOf(err).String(); got != v.err {
					t.Errorf("%s: error %v (%s), want %s", v.name, err, got, v.err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", v.name, err)
				continue
			}
			layers[v.name] = l
			order = append(order, l)
			if l.DiffID() != v.diffID {
				t.Errorf("%s: DiffID %s, want %s", v.name, l.DiffID(), v.diffID)
			}
			if l.ChainID() != v.chainID {
				t.Errorf("%s: ChainID %s, want %s", v.name, l.ChainID(), v.chainID)
			}
			if l.(*layerRef).StreamSize() != int64(len(data)) {
				t.Errorf("%s: StreamSize %d, want %d", v.name, l.(*layerRef).StreamSize(), len(data))
			}
			rc, err := l.TarStream()
			if err != nil {
				t.Errorf("%s: TarStream: %v", v.name, err)
				continue
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Errorf("%s: export: %v", v.name, err)
			} else if !bytes.Equal(got, data) {
				t.Errorf("%s: exported %d bytes that differ from the %d registered", v.name, len(got), len(data))
			}
			if err := l.Verify(); err != nil {
				t.Errorf("%s: Verify: %v", v.name, err)
			}
		}
		// Everything goes when the references do (children released before parents or not).
		for i := len(order) - 1; i >= 0; i-- {
			release(t, s, order[i])
		}
		if m := s.Map(); len(m) != 0 {
			t.Errorf("after releasing every vector, the store still has %d layers", len(m))
		}
	})
}
