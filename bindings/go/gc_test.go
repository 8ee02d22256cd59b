// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// GC deletes what nothing keeps (layers left without a reference by an earlier Close), child
// first, and never a layer that is retained, a parent, or held by a reference of this Store.
func TestGC(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		root := t.TempDir()
		var orphanBase, orphanChild, kept, keptBase, held ChainID
		{
			s, err := Open(root, &Options{Driver: driver})
			if err != nil {
				t.Fatal(err)
			}
			b := register(t, s, makeTar(t, file("a", "1")), "")
			c := register(t, s, makeTar(t, file("b", "22")), b.ChainID())
			kb := register(t, s, makeTar(t, file("c", "333")), "")
			k := register(t, s, makeTar(t, file("d", "4444")), kb.ChainID())
			h := register(t, s, makeTar(t, file("e", "55555")), "")
			orphanBase, orphanChild, keptBase, kept, held = b.ChainID(), c.ChainID(), kb.ChainID(), k.ChainID(), h.ChainID()
			if err := s.Retain(kept); err != nil {
				t.Fatal(err)
			}
			// Close without Release: the references go, nothing is deleted.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		s := openAt(t, root, driver)
		if n := len(s.Map()); n != 5 {
			t.Fatalf("after reopen Map has %d layers, want 5", n)
		}
		h, err := s.Get(held)
		if err != nil {
			t.Fatal(err)
		}
		removed, err := s.GC()
		if err != nil {
			t.Fatalf("GC: %v", err)
		}
		if len(removed) != 2 || removed[0].ChainID != orphanChild || removed[1].ChainID != orphanBase {
			t.Fatalf("GC removed %+v, want [%s %s] (child first)", removed, orphanChild, orphanBase)
		}
		if removed[0].DiffSize != 2 || removed[0].DiffID == "" {
			t.Errorf("removed report %+v", removed[0])
		}
		m := s.Map()
		if len(m) != 3 || m[kept] == nil || m[keptBase] == nil || m[held] == nil {
			t.Errorf("after GC Map = %v, want the retained chain and the held layer", m)
		}
		if _, err := s.Get(orphanChild); !errors.Is(err, ErrLayerDoesNotExist) {
			t.Errorf("Get of a collected layer: %v, want ErrLayerDoesNotExist", err)
		}
		// Nothing more to collect: an empty report.
		if again, err := s.GC(); err != nil || len(again) != 0 {
			t.Errorf("second GC = %+v, %v, want nothing", again, err)
		}
		// The held layer goes by its own Release, not by GC.
		if m := release(t, s, h); len(m) != 1 || m[0].ChainID != held {
			t.Errorf("release of the held layer removed %+v", m)
		}
		// Read-only: GC fails with ErrIO (EROFS) and deletes nothing.
		ro, err := Open(root, &Options{Driver: driver, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		var roErr *Error
		if _, err := ro.GC(); !errors.Is(err, ErrIO) || !errors.As(err, &roErr) || roErr.Errno != syscall.EROFS {
			t.Errorf("GC on a read-only store: %v, want ErrIO with EROFS", err)
		}
		ro.Close()
		if _, err := ro.GC(); !errors.Is(err, ErrClosed) {
			t.Errorf("GC after Close: %v, want ErrClosed", err)
		}
		if len(s.Map()) != 2 {
			t.Errorf("the retained chain is gone: %v", s.Map())
		}
	})
}

// CacheID is the id the store's driver keeps the layer under: a directory of the dir driver,
// the id a custom driver is called with; the same for a reference and a description.
func TestCacheID(t *testing.T) {
	root := t.TempDir()
	s := openAt(t, root, "dir")
	a := register(t, s, makeTar(t, file("a", "1")), "")
	b := register(t, s, makeTar(t, file("b", "2")), a.ChainID())
	ca := a.CacheID()
	if ca == "" || ca == b.CacheID() || strings.Contains(string(a.ChainID()), ca) {
		t.Fatalf("cache ids %q %q for %s", ca, b.CacheID(), a.ChainID())
	}
	if fi, err := os.Lstat(filepath.Join(root, "dir", ca)); err != nil || !fi.IsDir() {
		t.Errorf("no directory %s/dir/%s: %v", root, ca, err)
	}
	if v := s.Map()[a.ChainID()]; v == nil || v.CacheID() != ca {
		t.Errorf("the description's CacheID differs")
	}
	if p := b.Parent(); p == nil || p.CacheID() != ca {
		t.Errorf("the parent's CacheID differs")
	}
	if EmptyLayer.CacheID() != "" {
		t.Error("EmptyLayer has a cache id")
	}

	d := newMemDriver(true)
	cs, err := Open(t.TempDir(), &Options{CustomDriver: d})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	l := register(t, cs, makeTar(t, file("c", "3")), "")
	d.mu.Lock()
	_, ok := d.layers[l.CacheID()]
	n := len(d.layers)
	d.mu.Unlock()
	if !ok || n != 1 {
		t.Errorf("the custom driver does not know CacheID %q", l.CacheID())
	}
}

// Options.PayloadPackMax turns the dir driver's payload pack on, is kept in the store (a later
// open with 0 keeps it, < 0 turns it off), and packed layers export byte for byte.
func TestPayloadPackOption(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root, &Options{Driver: "dir", PayloadPackMax: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.PayloadPackMax(); got != 32<<10 {
		t.Errorf("PayloadPackMax = %d, want %d", got, 32<<10)
	}
	big := strings.Repeat("b", 40<<10)
	data := makeTar(t, file("small", "a small payload"), file("big", big), file("tiny", "t"))
	l := register(t, s, data, "")
	if got := export(t, l); !bytes.Equal(got, data) {
		t.Errorf("the packed layer's export differs from the registered stream")
	}
	pack, err := os.ReadFile(filepath.Join(root, "dir", l.CacheID(), "meta", "pack"))
	if err != nil {
		t.Fatalf("no payload pack: %v", err)
	}
	if string(pack) != "a small payloadt" {
		t.Errorf("pack holds %q, want the two small payloads in stream order", pack)
	}
	s.Close()

	again, err := Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.PayloadPackMax(); got != 32<<10 {
		t.Errorf("reopened with 0: PayloadPackMax = %d, want the kept %d", got, 32<<10)
	}
	again.Close()
	off, err := Open(root, &Options{PayloadPackMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if got := off.PayloadPackMax(); got != 0 {
		t.Errorf("turned off: PayloadPackMax = %d, want 0", got)
	}
	m := register(t, off, makeTar(t, file("other", "x")), "")
	if _, err := os.Lstat(filepath.Join(root, "dir", m.CacheID(), "meta", "pack")); !os.IsNotExist(err) {
		t.Errorf("a layer registered with the pack off has one: %v", err)
	}
	if _, err := Open(t.TempDir(), &Options{PayloadPackMax: 17 << 20}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a threshold above 16 MiB: %v, want ErrInvalid", err)
	}
}
