// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Descriptions (Map, Parent) hold no C handle once a call returns: they look through handles
// closed at once (rolayer_layer_close), so nothing is pinned and nothing is deleted.
func TestLooksHoldNothing(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		root := t.TempDir()
		{
			s := openAt(t, root, driver)
			l1 := register(t, s, makeTar(t, file("a", "a")), "")
			register(t, s, makeTar(t, file("b", "bb")), l1.ChainID())
			s.Close()
		}
		s := openAt(t, root, driver)
		for _, l := range s.Map() {
			export(t, l)
			if _, err := l.Metadata(); err != nil {
				t.Fatal(err)
			}
			if err := l.Verify(); err != nil {
				t.Fatal(err)
			}
			if p := l.Parent(); p != nil {
				export(t, p)
			}
		}
		s.refMu.RLock()
		pins := len(s.pins)
		s.refMu.RUnlock()
		s.trackMu.Lock()
		open := len(s.handles) + len(s.streams)
		s.trackMu.Unlock()
		if pins != 0 || open != 0 {
			t.Errorf("after looking: %d pins, %d handles or streams", pins, open)
		}
		if len(s.Map()) != 2 {
			t.Error("looking deleted layers")
		}
	})
}

// Looks running while releases cascade down chains never make a cascade stop early: when every
// reference is gone, every layer is gone.
func TestLooksDuringReleases(t *testing.T) {
	s := openStore(t, "exact")
	const chains, depth = 6, 4
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				for _, l := range s.Map() {
					for p := l.Parent(); p != nil; p = p.Parent() {
						_, _ = p.Metadata()
					}
				}
			}
		}()
	}
	for round := 0; round < 5; round++ {
		var rw sync.WaitGroup
		for c := 0; c < chains; c++ {
			rw.Add(1)
			go func(c int) {
				defer rw.Done()
				var parent ChainID
				var refs []Layer
				for d := 0; d < depth; d++ {
					l, err := s.Register(bytes.NewReader(makeTar(t, file(fmt.Sprintf("c%d/r%d/d%d", c, round, d), "x"))), parent)
					if err != nil {
						t.Error(err)
						return
					}
					parent = l.ChainID()
					refs = append(refs, l)
				}
				// Parents first: each is then kept by its child only, and the top's release
				// cascades down the whole chain.
				for _, l := range refs {
					if _, err := s.Release(l); err != nil {
						t.Error(err)
					}
				}
			}(c)
		}
		rw.Wait()
	}
	stop.Store(true)
	wg.Wait()
	if n := len(s.Map()); n != 0 {
		t.Errorf("%d layers left after every reference was released", n)
	}
}

// A description's stream open on a layer that is kept only by its child: releasing the child
// must still delete the whole chain, the parent when the stream closes (as for a reference's
// stream), and a reference dropped without Release meanwhile must not delete anything.
func TestDescriptionStreamDuringRelease(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		root := t.TempDir()
		var a, c ChainID
		{
			s := openAt(t, root, driver)
			la := register(t, s, makeTar(t, file("a", "a")), "")
			lc := register(t, s, makeTar(t, file("c", "c")), la.ChainID())
			a, c = la.ChainID(), lc.ChainID()
			s.Close()
		}
		s := openAt(t, root, driver)
		rc, err := s.Map()[a].TarStream()
		if err != nil {
			t.Fatal(err)
		}
		lc, err := s.Get(c)
		if err != nil {
			t.Fatal(err)
		}
		if removed := release(t, s, lc); len(removed) != 1 || removed[0].ChainID != c {
			t.Errorf("removed %+v, want only the child while the parent's stream is open", removed)
		}
		if _, err := io.ReadAll(rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if m := s.Map(); len(m) != 0 {
			t.Errorf("%d layers left after the parent's stream closed", len(m))
		}
	})
}

// A reference dropped without Release while a description's stream of its layer is open, after
// another reference of the layer was released: the finalizer still deletes nothing.
func TestFinalizerWithDescriptionStream(t *testing.T) {
	s := openStore(t, "exact")
	l := register(t, s, makeTar(t, file("kept", "k")), "")
	id := l.ChainID()
	rc, err := s.Map()[id].TarStream()
	if err != nil {
		t.Fatal(err)
	}
	func() {
		lost, err := s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		_ = lost
	}()
	// One reference released (the stream and the lost one remain): nothing is deleted.
	if m := release(t, s, l); len(m) != 0 {
		t.Fatalf("removed %+v", m)
	}
	open := func() int {
		s.trackMu.Lock()
		defer s.trackMu.Unlock()
		return len(s.handles)
	}
	for i := 0; i < 100 && open() != 0; i++ {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	if open() != 0 {
		t.Fatal("the finalizer did not run")
	}
	rc.Close()
	if len(s.Map()) != 1 {
		t.Fatal("the finalizer of the lost reference deleted the layer")
	}
	g, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if m := release(t, s, g); len(m) != 1 {
		t.Errorf("Get+Release after the finalizer removed %+v", m)
	}
}
