// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// imageLayers is a 4-layer image whose layers change each other's files.
func imageLayers(t *testing.T) [][]byte {
	return [][]byte{
		makeTar(t, entry{name: "etc/", dir: true}, file("etc/os", "base"), file("bin", "sh")),
		makeTar(t, file("etc/os", "second"), file("lib", "libc")),
		makeTar(t, entry{name: "usr/", dir: true}, file("usr/app", "app")),
		makeTar(t, file("etc/motd", "hello"), file("usr/app", "app2")),
	}
}

// storeEntries lists every path under the store's root (staged data lives in its temporary
// folder or beside the layers; either way nothing may be left after a discard).
func storeEntries(t *testing.T, root string) []string {
	t.Helper()
	var names []string
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil // removed while we walk (a finalizer's discard runs meanwhile): the caller looks again
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		names = append(names, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestStageInParallelCommitsAsRegister(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		layers := imageLayers(t)
		// The reference: plain registers, one after the other.
		ref := openStore(t, driver)
		var want []ChainID
		parent := ChainID("")
		for _, b := range layers {
			l := register(t, ref, b, parent)
			want = append(want, l.ChainID())
			parent = l.ChainID()
		}

		s := openStore(t, driver)
		staged := make([]*Staged, len(layers))
		errs := make([]error, len(layers))
		var wg sync.WaitGroup
		for i := range layers {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				staged[i], errs[i] = s.Stage(bytes.NewReader(layers[i]), Descriptor{})
			}(i)
		}
		wg.Wait()
		parent = ""
		for i, st := range staged {
			if errs[i] != nil {
				t.Fatalf("Stage(%d): %v", i, errs[i])
			}
			if st.StreamSize() != int64(len(layers[i])) {
				t.Errorf("layer %d: StreamSize %d, want %d", i, st.StreamSize(), len(layers[i]))
			}
			l, err := st.Commit(parent)
			if err != nil {
				t.Fatalf("Commit(%d): %v", i, err)
			}
			if l.ChainID() != want[i] || l.DiffID() != st.DiffID() {
				t.Errorf("layer %d: %s / %s, want %s / %s", i, l.ChainID(), l.DiffID(), want[i], st.DiffID())
			}
			if got := export(t, l); !bytes.Equal(got, layers[i]) {
				t.Errorf("layer %d: the export differs from the staged stream", i)
			}
			if _, err := st.Commit(parent); !errors.Is(err, ErrInvalid) {
				t.Errorf("second Commit: %v, want ErrInvalid", err)
			}
			st.Discard() // a no-op after a commit: the layer stays
			parent = l.ChainID()
		}
		if len(s.Map()) != len(layers) {
			t.Fatalf("%d layers after the commits, want %d", len(s.Map()), len(layers))
		}
		// Committing a ChainID that exists gives a new reference to it.
		st, err := s.Stage(bytes.NewReader(layers[0]), Descriptor{})
		if err != nil {
			t.Fatal(err)
		}
		l, err := st.Commit("")
		if err != nil || l.ChainID() != want[0] {
			t.Fatalf("commit of an existing layer: %v, %v", l, err)
		}
		release(t, s, l)
		if _, err := s.Get(want[0]); err != nil {
			t.Errorf("the first reference must still hold the layer: %v", err)
		}
	})
}

func TestStageFailuresLeaveNothing(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		root := t.TempDir()
		s := openAt(t, root, driver)
		before := storeEntries(t, root)
		layers := imageLayers(t)

		// A malformed stream fails at Stage with nothing left.
		if _, err := s.Stage(bytes.NewReader([]byte("not a tar archive, not at all")), Descriptor{}); !errors.Is(err, ErrArchive) {
			t.Fatalf("Stage of garbage: %v, want ErrArchive", err)
		}
		// A reader's error is wrapped.
		boom := errors.New("boom")
		if _, err := s.Stage(&failingReader{data: layers[0], n: 100, err: boom}, Descriptor{}); !errors.Is(err, boom) || codeOf(err) != CodeCallback {
			t.Fatalf("Stage with a failing reader: %v", err)
		}
		// An unknown parent fails the commit and leaves the staged layer usable.
		st, err := s.Stage(bytes.NewReader(layers[1]), Descriptor{})
		if err != nil {
			t.Fatal(err)
		}
		unknown := ChainID("sha256:" + fmt.Sprintf("%064x", 1))
		if _, err := st.Commit(unknown); !errors.Is(err, ErrLayerDoesNotExist) {
			t.Fatalf("Commit on an unknown parent: %v, want ErrLayerDoesNotExist", err)
		}
		if _, err := st.Commit("not a digest"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Commit on a malformed parent: %v, want ErrInvalid", err)
		}
		st.Discard()
		st.Discard() // idempotent
		if _, err := st.Commit(""); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Commit after Discard: %v, want ErrInvalid", err)
		}
		// A cancelled context stops staging.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.StageContext(ctx, bytes.NewReader(layers[0]), Descriptor{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("StageContext with a cancelled context: %v", err)
		}
		if after := storeEntries(t, root); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("the store changed:\nbefore %v\nafter  %v", before, after)
		}
		if len(s.Map()) != 0 {
			t.Error("a layer was registered")
		}
	})
}

// A staged layer dropped without Commit or Discard is discarded by its finalizer, and one that
// outlives its store is left to the next Open, which removes it. Neither touches registered
// layers.
func TestStagedDroppedOrOrphaned(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		root := t.TempDir()
		layers := imageLayers(t)
		s := openAt(t, root, driver)
		base := register(t, s, layers[0], "")
		s.Retain(base.ChainID())
		before := storeEntries(t, root)

		func() {
			if _, err := s.Stage(bytes.NewReader(layers[1]), Descriptor{}); err != nil {
				t.Fatal(err)
			}
		}()
		deadline := time.Now().Add(10 * time.Second)
		for {
			runtime.GC()
			if fmt.Sprint(storeEntries(t, root)) == fmt.Sprint(before) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a dropped staged layer was not discarded:\nbefore %v\nnow    %v", before, storeEntries(t, root))
			}
			time.Sleep(20 * time.Millisecond)
		}

		st, err := s.Stage(bytes.NewReader(layers[1]), Descriptor{})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if _, err := st.Commit(base.ChainID()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Commit after Close: %v, want ErrClosed", err)
		}
		st.Discard() // after Close: left to the next Open
		s2 := openAt(t, root, driver)
		if after := storeEntries(t, root); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("the next Open left staged data:\nbefore %v\nafter  %v", before, after)
		}
		m := s2.Map()
		if len(m) != 1 || m[base.ChainID()] == nil {
			t.Fatalf("registered layers changed: %v", m)
		}
	})
}

// Map describes every layer from one read of the database, with the same values as Get.
func TestMapMatchesGet(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		root := t.TempDir()
		layers := imageLayers(t)
		{
			s := openAt(t, root, driver)
			parent := ChainID("")
			for i, b := range layers {
				desc := Descriptor{}
				if i == 2 {
					desc = Descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
						Digest: digestOf("sha256:" + fmt.Sprintf("%064x", 7)), Size: 1234}
				}
				l, err := s.RegisterWithDescriptor(bytes.NewReader(b), parent, desc)
				if err != nil {
					t.Fatal(err)
				}
				parent = l.ChainID()
			}
			s.Retain(parent)
			s.Close()
		}
		s := openAt(t, root, driver) // a fresh Store: nothing known before Map
		m := s.Map()
		if len(m) != len(layers) {
			t.Fatalf("Map: %d layers", len(m))
		}
		for id, v := range m {
			g, err := s.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			if v.ChainID() != g.ChainID() || v.DiffID() != g.DiffID() || v.Size() != g.Size() ||
				v.DiffSize() != g.DiffSize() || v.Descriptor() != g.Descriptor() {
				t.Errorf("%s: Map %+v, Get %+v", id, v, g)
			}
			vl, gl := v.(interface {
				CacheID() string
				StreamSize() int64
				Depth() int
			}), g.(interface {
				CacheID() string
				StreamSize() int64
				Depth() int
			})
			if vl.CacheID() != gl.CacheID() || vl.CacheID() == "" || vl.StreamSize() != gl.StreamSize() || vl.Depth() != gl.Depth() {
				t.Errorf("%s: cache id %q/%q, stream size %d/%d, depth %d/%d", id, vl.CacheID(), gl.CacheID(),
					vl.StreamSize(), gl.StreamSize(), vl.Depth(), gl.Depth())
			}
			if (v.Parent() == nil) != (g.Parent() == nil) || (v.Parent() != nil && v.Parent().ChainID() != g.Parent().ChainID()) {
				t.Errorf("%s: parents differ", id)
			}
			release(t, s, g)
		}
	})
}
