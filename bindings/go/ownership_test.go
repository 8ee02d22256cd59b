// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// collect runs the garbage collector until the store holds no C layer handle (the finalizers of
// the references dropped without Release have run).
func collect(t *testing.T, s *Store) {
	t.Helper()
	open := func() int {
		s.trackMu.Lock()
		defer s.trackMu.Unlock()
		return len(s.handles)
	}
	for i := 0; i < 200 && open() != 0; i++ {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	if n := open(); n != 0 {
		t.Fatalf("%d C layer handles left after the finalizers", n)
	}
}

// Dropping is not deleting: references that are garbage-collected (an unbound Register result,
// a whole chain) are closed by their finalizers, and every layer is still there, whole, after
// the store is closed and reopened. Only the explicit Release deletes.
func TestGarbageCollectedLayersAreNotDeleted(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		root := t.TempDir()
		s := openAt(t, root, driver)
		tars := [][]byte{makeTar(t, file("a", "1")), makeTar(t, file("b", "2")), makeTar(t, file("c", "3"))}
		var ids []ChainID
		func() {
			var parent ChainID
			for _, tr := range tars {
				l, err := s.Register(bytes.NewReader(tr), parent) // dropped without Release
				if err != nil {
					t.Fatal(err)
				}
				parent = l.ChainID()
				ids = append(ids, parent)
			}
			// The result not even bound to a variable.
			if _, err := s.Register(bytes.NewReader(emptyTar), ""); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, ChainID(emptyDiffID))
		}()
		collect(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openAt(t, root, driver)
		got, err := s.list()
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
		want := append([]ChainID(nil), ids...)
		sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
		if strings.Join(strs(got), " ") != strings.Join(strs(want), " ") {
			t.Fatalf("after GC and reopen: %v, want %v (the finalizers deleted layers)", got, want)
		}
		for i, tr := range tars {
			l, err := s.Get(ids[i])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(export(t, l), tr) {
				t.Fatalf("layer %d exports other bytes", i)
			}
			if err := s.CloseLayer(l); err != nil {
				t.Fatal(err)
			}
		}
		// Only an explicit Release deletes: the top of the chain takes the chain with it.
		top, err := s.Get(ids[2])
		if err != nil {
			t.Fatal(err)
		}
		if m := release(t, s, top); len(m) != 3 || m[0].ChainID != ids[2] || m[2].ChainID != ids[0] {
			t.Fatalf("Release removed %+v, want the chain of 3, child first", m)
		}
	})
}

// CloseLayer gives the reference up now, deleting nothing; a second close or a release of the
// closed reference is ErrLayerNotRetained, and does not delete either.
func TestCloseLayerDeletesNothing(t *testing.T) {
	s := openStore(t, "exact")
	l := register(t, s, makeTar(t, file("kept", "k")), "")
	id := l.ChainID()
	if err := s.CloseLayer(l); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseLayer(l); !errors.Is(err, ErrLayerNotRetained) {
		t.Fatalf("second CloseLayer: %v, want ErrLayerNotRetained", err)
	}
	if _, err := s.Release(l); !errors.Is(err, ErrLayerNotRetained) {
		t.Fatalf("Release after CloseLayer: %v, want ErrLayerNotRetained", err)
	}
	if _, err := l.TarStream(); !errors.Is(err, ErrLayerNotRetained) {
		t.Fatalf("TarStream after CloseLayer: %v, want ErrLayerNotRetained", err)
	}
	if _, ok := s.Map()[id]; !ok {
		t.Fatal("CloseLayer deleted the layer")
	}
	if err := s.CloseLayer(EmptyLayer); !errors.Is(err, ErrLayerNotRetained) {
		t.Fatalf("CloseLayer(EmptyLayer): %v", err)
	}
}

func strs(ids []ChainID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

// Without cgo the package does not build, and the error names what to do.
func TestBuildWithoutCgoFailsClearly(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		var lerr error
		if gobin, lerr = exec.LookPath("go"); lerr != nil {
			t.Skipf("no go command to build with: %v", lerr)
		}
	}
	cmd := exec.Command(gobin, "build", "-o", os.DevNull, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("CGO_ENABLED=0 go build succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "rolayer_needs_cgo__build_with_CGO_ENABLED_1") {
		t.Fatalf("CGO_ENABLED=0 go build failed without naming cgo:\n%s", out)
	}
	if n := strings.Count(string(out), "\n./"); n != 1 {
		t.Fatalf("want exactly the one explanatory error, got %d:\n%s", n, out)
	}
}
