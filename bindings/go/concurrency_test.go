// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
)

// Many goroutines register, get, stream, describe and release at once (run with -race).
func TestConcurrent(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		s := openStore(t, driver)
		const workers, rounds = 12, 8
		// A few distinct tars shared by the workers (same ChainIDs registered concurrently), each
		// on top of a shared base that one reference keeps.
		base := register(t, s, makeTar(t, file("base", "shared base")), "")
		tars := make([][]byte, 5)
		for i := range tars {
			tars[i] = makeTar(t, file(fmt.Sprintf("f%d", i), string(bytes.Repeat([]byte{byte('a' + i)}, 3000+i*7000))))
		}
		var wg sync.WaitGroup
		errs := make(chan error, workers*rounds*4)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for r := 0; r < rounds; r++ {
					data := tars[(w+r)%len(tars)]
					l, err := s.Register(bytes.NewReader(data), base.ChainID())
					if err != nil {
						errs <- fmt.Errorf("register: %w", err)
						return
					}
					g, err := s.Get(l.ChainID())
					if err != nil {
						errs <- fmt.Errorf("get: %w", err)
						return
					}
					rc, err := g.TarStream()
					if err != nil {
						errs <- fmt.Errorf("stream: %w", err)
						return
					}
					got, err := io.ReadAll(rc)
					rc.Close()
					if err != nil || !bytes.Equal(got, data) {
						errs <- fmt.Errorf("export: %v (%d bytes)", err, len(got))
					}
					for _, m := range s.Map() {
						_ = m.Size()
						if p := m.Parent(); p != nil && p.ChainID() != base.ChainID() {
							errs <- fmt.Errorf("parent %s", p.ChainID())
						}
					}
					if p := g.Parent(); p == nil || p.ChainID() != base.ChainID() {
						errs <- fmt.Errorf("Parent() = %v", p)
					}
					if _, err := s.Release(l); err != nil {
						errs <- fmt.Errorf("release: %w", err)
					}
					if err := g.Verify(); err != nil {
						errs <- fmt.Errorf("verify: %w", err)
					}
					if _, err := s.Release(g); err != nil {
						errs <- fmt.Errorf("release: %w", err)
					}
					if _, err := s.Release(g); !errors.Is(err, ErrLayerNotRetained) {
						errs <- fmt.Errorf("double release: %v", err)
					}
				}
			}(w)
		}
		// Meanwhile, one stream of the base read by many goroutines in turn.
		rc, err := base.TarStream()
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var got []byte
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 97)
				for {
					mu.Lock()
					n, err := rc.Read(buf)
					got = append(got, buf[:n]...)
					mu.Unlock()
					if err != nil {
						if err != io.EOF {
							errs <- err
						}
						return
					}
				}
			}()
		}
		wg.Wait()
		rc.Close()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if want := export(t, base); !bytes.Equal(got, want) {
			t.Error("the shared stream differs")
		}
		if m := s.Map(); len(m) != 1 {
			t.Errorf("%d layers left, want the base only", len(m))
		}
		if m := release(t, s, base); len(m) != 1 {
			t.Errorf("base release removed %+v", m)
		}
	})
}

// Close while other goroutines still work: they fail with ErrClosed (or finish), nothing crashes,
// and nothing still referenced is deleted.
func TestCloseWhileBusy(t *testing.T) {
	root := t.TempDir()
	s := openAt(t, root, "exact")
	keep := register(t, s, makeTar(t, file("keep", "k")), "")
	var wg sync.WaitGroup
	var mu sync.Mutex
	// Layers still referenced (never released) by the workers. The Layer values are kept, not
	// just their ChainIDs: an unreachable reference is released by its finalizer.
	var kept []Layer
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; ; r++ {
				l, err := s.Register(bytes.NewReader(makeTar(t, file(fmt.Sprint(w, r), "x"))), keep.ChainID())
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("register: %v", err)
					}
					return
				}
				rc, err := l.TarStream()
				if err == nil {
					io.Copy(io.Discard, rc)
					rc.Close()
				}
				if r%2 == 0 {
					s.Release(l)
				} else {
					mu.Lock()
					kept = append(kept, l)
					mu.Unlock()
				}
			}
		}(w)
	}
	for len(s.Map()) < 10 {
		runtime.Gosched()
	}
	s.Close()
	wg.Wait()
	s2 := openAt(t, root, "exact")
	m := s2.Map()
	if len(kept) == 0 || m[keep.ChainID()] == nil {
		t.Fatalf("kept %d layers; base present: %v", len(kept), m[keep.ChainID()] != nil)
	}
	for _, l := range kept {
		if m[l.ChainID()] == nil {
			t.Errorf("Close deleted %s", l.ChainID())
		}
	}
}
