// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestEmptyLayer(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		s := openStore(t, driver)
		l := register(t, s, emptyTar, "")
		if l.DiffID() != emptyDiffID || l.ChainID() != ChainID(emptyDiffID) {
			t.Fatalf("empty layer: DiffID %s ChainID %s", l.DiffID(), l.ChainID())
		}
		if l.Size() != 0 || l.DiffSize() != 0 || l.Parent() != nil {
			t.Errorf("empty layer: Size %d DiffSize %d Parent %v", l.Size(), l.DiffSize(), l.Parent())
		}
		l2 := register(t, s, emptyTar, l.ChainID())
		if l2.ChainID() != emptyOnEmptyChain || l2.DiffID() != emptyDiffID {
			t.Errorf("empty on empty: ChainID %s DiffID %s", l2.ChainID(), l2.DiffID())
		}
		if want := CreateChainID([]DiffID{emptyDiffID, emptyDiffID}); want != emptyOnEmptyChain {
			t.Errorf("CreateChainID = %s", want)
		}
		if p := l2.Parent(); p == nil || p.ChainID() != l.ChainID() {
			t.Errorf("Parent() = %v", p)
		}
		if got := export(t, l2); !bytes.Equal(got, emptyTar) {
			t.Errorf("export of the empty layer: %d bytes", len(got))
		}
		release(t, s, l)
		if m := release(t, s, l2); len(m) != 2 || m[0].ChainID != emptyOnEmptyChain || m[1].ChainID != ChainID(emptyDiffID) {
			t.Errorf("removed %+v", m)
		}
	})
}

func TestSizes(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		s := openStore(t, driver)
		t1 := makeTar(t, entry{name: "d", dir: true}, file("d/a", "12345"), file("b", "xyz"))
		t2 := makeTar(t, file("c", "1234567890"), file("e", ""))
		l1 := register(t, s, t1, "")
		l2 := register(t, s, t2, l1.ChainID())
		if l1.DiffSize() != 8 || l1.Size() != 8 {
			t.Errorf("l1: DiffSize %d Size %d, want 8 8", l1.DiffSize(), l1.Size())
		}
		if l2.DiffSize() != 10 || l2.Size() != 18 {
			t.Errorf("l2: DiffSize %d Size %d, want 10 18", l2.DiffSize(), l2.Size())
		}
		if want := DiffID(digest.FromBytes(t2)); l2.DiffID() != want {
			t.Errorf("DiffID %s, want %s", l2.DiffID(), want)
		}
		if want := CreateChainID([]DiffID{l1.DiffID(), l2.DiffID()}); l2.ChainID() != want {
			t.Errorf("ChainID %s, want %s", l2.ChainID(), want)
		}
		release(t, s, l1)
		m := release(t, s, l2)
		want := []Metadata{
			{ChainID: l2.ChainID(), DiffID: l2.DiffID(), Size: 18, DiffSize: 10},
			{ChainID: l1.ChainID(), DiffID: l1.DiffID(), Size: 8, DiffSize: 8},
		}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("removed %+v, want %+v", m, want)
		}
	})
}

// The Docker engine's TestLayerRelease shape: L1 <- L2 <- {L3a, L3b}.
func TestReleaseCascade(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		s := openStore(t, driver)
		l1 := register(t, s, makeTar(t, file("one", "1")), "")
		l2 := register(t, s, makeTar(t, file("two", "22")), l1.ChainID())
		l3a := register(t, s, makeTar(t, file("three", "333")), l2.ChainID())
		l3b := register(t, s, makeTar(t, file("three", "3333")), l2.ChainID())
		if len(s.Map()) != 4 {
			t.Fatalf("Map has %d layers, want 4", len(s.Map()))
		}
		if m := release(t, s, l1); len(m) != 0 {
			t.Errorf("releasing L1 (still a parent) removed %+v", m)
		}
		if m := release(t, s, l2); len(m) != 0 {
			t.Errorf("releasing L2 (still a parent) removed %+v", m)
		}
		if m := release(t, s, l3a); len(m) != 1 || m[0].ChainID != l3a.ChainID() {
			t.Errorf("releasing L3a removed %+v", m)
		}
		m := release(t, s, l3b)
		want := []Metadata{
			{ChainID: l3b.ChainID(), DiffID: l3b.DiffID(), Size: 7, DiffSize: 4},
			{ChainID: l2.ChainID(), DiffID: l2.DiffID(), Size: 3, DiffSize: 2},
			{ChainID: l1.ChainID(), DiffID: l1.DiffID(), Size: 1, DiffSize: 1},
		}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("releasing L3b removed %+v, want %+v (child first)", m, want)
		}
		if len(s.Map()) != 0 {
			t.Errorf("the store still has %d layers", len(s.Map()))
		}
		// Double release: an error, not a crash.
		if _, err := s.Release(l3b); !errors.Is(err, ErrLayerNotRetained) {
			t.Errorf("second Release: %v, want ErrLayerNotRetained", err)
		}
		if _, err := l3b.TarStream(); !errors.Is(err, ErrLayerNotRetained) {
			t.Errorf("TarStream after Release: %v", err)
		}
		if _, err := s.Release(nil); !errors.Is(err, ErrLayerNotRetained) {
			t.Errorf("Release(nil): %v", err)
		}
	})
}

func TestSameTarTwice(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		s := openStore(t, driver)
		data := makeTar(t, file("a", "same"))
		a := register(t, s, data, "")
		b := register(t, s, data, "")
		if a.ChainID() != b.ChainID() {
			t.Fatalf("ChainIDs differ: %s %s", a.ChainID(), b.ChainID())
		}
		if len(s.Map()) != 1 {
			t.Errorf("Map has %d layers", len(s.Map()))
		}
		if m := release(t, s, a); len(m) != 0 {
			t.Errorf("first release removed %+v", m)
		}
		if got := export(t, b); !bytes.Equal(got, data) {
			t.Error("export differs")
		}
		if m := release(t, s, b); len(m) != 1 {
			t.Errorf("last release removed %+v", m)
		}
	})
}

func TestStoreRestore(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		root := t.TempDir()
		t1 := makeTar(t, file("x", "xx"))
		t2 := makeTar(t, file("y", "yyy"))
		var c1, c2 ChainID
		var d2 DiffID
		{
			s := openAt(t, root, driver)
			l1 := register(t, s, t1, "")
			l2, err := s.RegisterWithDescriptor(bytes.NewReader(t2), l1.ChainID(), Descriptor{
				MediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
				Digest:    digest.FromString("blob"),
				Size:      1234,
			})
			if err != nil {
				t.Fatal(err)
			}
			c1, c2, d2 = l1.ChainID(), l2.ChainID(), l2.DiffID()
			if err := s.Retain(c2); err != nil {
				t.Fatal(err)
			}
			// Closing with references open deletes nothing; they become unusable.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := l2.TarStream(); !errors.Is(err, ErrClosed) {
				t.Errorf("TarStream after Close: %v, want ErrClosed", err)
			}
			if _, err := s.Release(l1); !errors.Is(err, ErrClosed) {
				t.Errorf("Release after Close: %v, want ErrClosed", err)
			}
			if _, err := s.Get(c1); !errors.Is(err, ErrClosed) {
				t.Errorf("Get after Close: %v", err)
			}
		}
		s := openAt(t, root, driver)
		m := s.Map()
		if len(m) != 2 || m[c1] == nil || m[c2] == nil {
			t.Fatalf("Map after reopen: %v", m)
		}
		l2, err := s.Get(c2)
		if err != nil {
			t.Fatal(err)
		}
		if l2.DiffID() != d2 || l2.Size() != 5 || l2.DiffSize() != 3 {
			t.Errorf("restored: DiffID %s Size %d DiffSize %d", l2.DiffID(), l2.Size(), l2.DiffSize())
		}
		if p := l2.Parent(); p == nil || p.ChainID() != c1 {
			t.Errorf("restored parent %v, want %s", p, c1)
		}
		d := l2.Descriptor()
		if d.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" || d.Digest != digest.FromString("blob") || d.Size != 1234 {
			t.Errorf("restored descriptor %+v", d)
		}
		if l1 := m[c1]; l1.Descriptor().Size != -1 || l1.Descriptor().Digest != "" {
			t.Errorf("no descriptor: %+v", l1.Descriptor())
		}
		if got := export(t, l2); !bytes.Equal(got, t2) {
			t.Error("restored export differs")
		}
		if n, err := s.Retained(c2); err != nil || n != 1 {
			t.Errorf("Retained = %d, %v", n, err)
		}
		if m := release(t, s, l2); len(m) != 0 {
			t.Errorf("release of a retained layer removed %+v", m)
		}
		if len(s.Map()) != 2 {
			t.Errorf("the retained chain is gone")
		}
		// A description's stream pins the layer; Unretain must still delete the chain.
		if _, err := s.Map()[c2].Metadata(); err != nil {
			t.Fatal(err)
		}
		removed, err := s.Unretain(c2)
		if err != nil || len(removed) != 2 || removed[0].ChainID != c2 || removed[1].ChainID != c1 {
			t.Errorf("Unretain removed %+v, %v", removed, err)
		}
		if _, err := s.Unretain(c2); !errors.Is(err, ErrLayerDoesNotExist) {
			t.Errorf("Unretain of a deleted layer: %v", err)
		}
	})
}

// A freshly opened store has no references: Map must not delete anything, and its layers are
// descriptions (no Release), while Get then Release deletes a layer as in the Docker engine.
func TestMapHoldsNoReferences(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		root := t.TempDir()
		base := makeTar(t, file("base", "b"))
		top := makeTar(t, file("top", "tt"))
		{
			s := openAt(t, root, driver)
			l1 := register(t, s, base, "")
			register(t, s, top, l1.ChainID())
			s.Close() // keeps both, with no reference
		}
		s := openAt(t, root, driver)
		m := s.Map()
		if len(m) != 2 {
			t.Fatalf("Map: %d layers", len(m))
		}
		var lTop Layer
		for _, l := range m {
			if l.Parent() != nil {
				lTop = l
			}
		}
		if lTop == nil {
			t.Fatal("no layer with a parent")
		}
		// Descriptions work (streams, metadata, verify) and do not delete anything.
		if got := export(t, lTop); !bytes.Equal(got, top) {
			t.Error("export through Map differs")
		}
		if err := lTop.Verify(); err != nil {
			t.Error(err)
		}
		if _, err := lTop.Metadata(); err != nil {
			t.Error(err)
		}
		if got := export(t, lTop.Parent()); !bytes.Equal(got, base) {
			t.Error("export of the parent differs")
		}
		if _, err := s.Release(lTop); !errors.Is(err, ErrLayerNotRetained) {
			t.Errorf("Release of a Map layer: %v, want ErrLayerNotRetained", err)
		}
		s.Map()
		if len(s.Map()) != 2 {
			t.Fatal("looking at layers deleted some")
		}
		// Get + Release of the top deletes the chain, as in the Docker engine, Map or not.
		r, err := s.Get(lTop.ChainID())
		if err != nil {
			t.Fatal(err)
		}
		removed := release(t, s, r)
		if len(removed) != 2 || removed[0].ChainID != lTop.ChainID() {
			t.Errorf("Get+Release after Map removed %+v", removed)
		}
		if len(s.Map()) != 0 {
			t.Error("layers left")
		}
		if _, err := lTop.TarStream(); !errors.Is(err, ErrLayerDoesNotExist) {
			t.Errorf("TarStream of a deleted Map layer: %v", err)
		}
		if lTop.DiffID() == "" || lTop.Size() != 3 {
			t.Error("a description's getters must keep working")
		}
	})
}

func TestStreamOutlivesRelease(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		s := openStore(t, driver)
		data := makeTar(t, file("f", "stream keeps the layer"))
		l := register(t, s, data, "")
		rc, err := l.TarStream()
		if err != nil {
			t.Fatal(err)
		}
		if m := release(t, s, l); len(m) != 0 {
			t.Errorf("release with an open stream removed %+v", m)
		}
		if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, data) {
			t.Errorf("stream after release: %v", err)
		}
		rc.Close()
		if err := rc.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := rc.Read(make([]byte, 1)); !errors.Is(err, ErrClosed) {
			t.Errorf("Read after Close: %v", err)
		}
		if len(s.Map()) != 0 {
			t.Error("closing the last stream must delete the released layer")
		}
	})
}

func TestMaxDepth(t *testing.T) {
	s := openStore(t, "exact")
	var top Layer
	var parent ChainID
	for i := 1; i <= MaxDepth; i++ {
		l := register(t, s, emptyTar, parent)
		if top != nil {
			release(t, s, top) // the child keeps its parent
		}
		top, parent = l, l.ChainID()
	}
	if d := top.(*layerRef).Depth(); d != MaxDepth {
		t.Fatalf("depth %d", d)
	}
	_, err := s.Register(bytes.NewReader(emptyTar), parent)
	if !errors.Is(err, ErrMaxDepthExceeded) {
		t.Fatalf("depth %d: %v, want ErrMaxDepthExceeded", MaxDepth+1, err)
	}
	if m := release(t, s, top); len(m) != MaxDepth {
		t.Errorf("release removed %d layers, want %d", len(m), MaxDepth)
	}
}

func TestErrors(t *testing.T) {
	s := openStore(t, "exact")
	missing := ChainID("sha256:" + string(bytes.Repeat([]byte("0"), 64)))
	if _, err := s.Get(missing); !errors.Is(err, ErrLayerDoesNotExist) {
		t.Errorf("Get(missing): %v", err)
	}
	if _, err := s.Get("sha256:abc"); !errors.Is(err, ErrInvalid) || errors.Is(err, ErrLayerDoesNotExist) {
		t.Errorf("Get(malformed): %v", err)
	}
	if _, err := s.Register(bytes.NewReader(emptyTar), missing); !errors.Is(err, ErrLayerDoesNotExist) {
		t.Errorf("Register on a missing parent: %v", err)
	}
	if _, err := s.Unretain(missing); !errors.Is(err, ErrLayerDoesNotExist) {
		t.Errorf("Unretain(missing): %v", err)
	}
	l := register(t, s, emptyTar, "")
	if _, err := s.Unretain(l.ChainID()); !errors.Is(err, ErrLayerNotRetained) {
		t.Errorf("Unretain without Retain: %v", err)
	}
	l2 := register(t, s, makeTar(t, file("a", "b")), "")
	if _, err := l2.TarStreamFrom(l.ChainID()); !errors.Is(err, ErrNotAncestor) {
		t.Errorf("TarStreamFrom(non-ancestor): %v", err)
	}
	var e *Error
	if _, err := s.Register(bytes.NewReader([]byte("not a tar at all, not 512 bytes")), ""); !errors.As(err, &e) || e.Code != CodeArchive {
		t.Errorf("Register(garbage): %v", err)
	} else if !errors.Is(err, ErrArchive) || e.Error() == "" {
		t.Errorf("error %#v", e)
	}
	if _, err := Open(t.TempDir(), &Options{Driver: "no-such-driver"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open with an unknown driver: %v", err)
	}
	// A second Open of the same root shares the store (the Docker engine's TestStoreRestore
	// shape): it does not wait, and it sees the first one's layers.
	root := t.TempDir()
	first := openAt(t, root, "exact")
	l1, err := first.Register(bytes.NewReader(make([]byte, 1024)), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Retain(l1.ChainID()); err != nil {
		t.Fatal(err)
	}
	second, err := Open(root, &Options{Driver: "exact", BusyTimeout: -1})
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	if l2, err := second.Get(l1.ChainID()); err != nil {
		t.Errorf("second Open does not see the first's layer: %v", err)
	} else {
		second.Release(l2)
	}
	first.Release(l1)
	second.Close()
	// Read-only: reads work, writes fail with ErrIO (EROFS).
	ro, err := Open(root, &Options{Driver: "exact", ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only Open: %v", err)
	}
	if len(ro.Map()) != 1 {
		t.Errorf("read-only store lists %d layers", len(ro.Map()))
	}
	var roErr *Error
	if _, err := ro.Register(bytes.NewReader(make([]byte, 2048)), ""); !errors.Is(err, ErrIO) || !errors.As(err, &roErr) || roErr.Errno != syscall.EROFS {
		t.Errorf("Register on a read-only store: %v", err)
	}
	ro.Close()
	// A store created with one driver is reopened with that driver only.
	s.Close()
	if _, err := Open(s.Root(), &Options{Driver: "dir"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("reopen with another driver: %v", err)
	}
	if Version() == "" || HeaderVersion == "" || CodeDigest.String() != "ROLAYER_EDIGEST" || CodeDigest.Text() == "" {
		t.Error("version or code names")
	}
}

// exactLayerFile finds the only <root>/exact/<cacheid>/layer.tar.
func exactLayerFile(t *testing.T, root string) string {
	t.Helper()
	var found []string
	filepath.WalkDir(filepath.Join(root, "exact"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "layer.tar" {
			found = append(found, p)
		}
		return nil
	})
	if len(found) != 1 {
		t.Fatalf("found %d layer.tar files under %s/exact", len(found), root)
	}
	return found[0]
}

func TestVerificationFailure(t *testing.T) {
	s := openStore(t, "exact")
	data := makeTar(t, file("a", "payload that will be modified"))
	l := register(t, s, data, "")
	path := exactLayerFile(t, s.Root())
	if md, err := l.Metadata(); err != nil || md["Path"] != path {
		t.Errorf("Metadata %v, %v; want Path %s", md, err, path)
	}
	stored, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	stored[len(stored)-1024-3] ^= 0x20 // a byte of the last block before the end-of-archive zeros
	if err := os.WriteFile(path, stored, 0o600); err != nil {
		t.Fatal(err)
	}

	check := func(what string, err error) {
		t.Helper()
		var v *VerificationError
		if !errors.As(err, &v) {
			t.Fatalf("%s: %v (%T), want a *VerificationError", what, err, err)
		}
		if v.DiffID != l.DiffID() || !errors.Is(err, ErrDigestMismatch) {
			t.Errorf("%s: DiffID %s, error %v", what, v.DiffID, err)
		}
		want := "could not verify layer data for: " + string(l.DiffID())
		if msg := err.Error(); len(msg) < len(want) || msg[:len(want)] != want {
			t.Errorf("%s: message %q", what, msg)
		}
	}

	// Small reads: the bytes before the damaged 1 MiB block come out (none here: the stream is
	// one block), then the read that would have returned them fails; no damaged byte goes out.
	rc, err := l.TarStream()
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 100)
	var readErr error
	for {
		n, err := rc.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			t.Fatal("a tampered stream ended with io.EOF")
		}
		if err != nil {
			readErr = err
			break
		}
	}
	check("Read", readErr)
	if len(got) != 0 {
		t.Errorf("got %d bytes before the error, want none (the damaged block is checked before it goes out)", len(got))
	}
	if _, err := rc.Read(buf); err != readErr {
		t.Errorf("the error is not sticky: %v", err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	// io.Copy (WriteTo), io.ReadAll, Verify, and through Map.
	rc, _ = l.TarStream()
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	check("io.Copy", err)
	rc, _ = l.TarStream()
	_, err = io.ReadAll(rc)
	rc.Close()
	check("io.ReadAll", err)
	check("Verify", l.Verify())
	check("Map Verify", s.Map()[l.ChainID()].Verify())
	release(t, s, l)
}

func TestTarStreamFrom(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		s := openStore(t, driver)
		t1 := makeTar(t, file("a", "aaa"))
		t2 := makeTar(t, file("b", "bbb"))
		l1 := register(t, s, t1, "")
		l2 := register(t, s, t2, l1.ChainID())
		rc, err := l2.TarStreamFrom(l1.ChainID())
		got := readAll(t, rc, err)
		if driver == "exact" && !bytes.Equal(got, t2) {
			t.Error("the exact driver's diff against the parent must be the registered stream")
		}
		if len(got) == 0 {
			t.Error("empty diff")
		}
		// The flattened chain, on every driver (built from the verified streams).
		rc, err = l2.TarStreamFrom("")
		flat, _, err2 := readEntries(bytes.NewReader(readAll(t, rc, err)))
		if err2 != nil || len(flat) != 2 {
			t.Errorf("%s, flattened chain: %v, %d entries, want 2", driver, err2, len(flat))
		}
		release(t, s, l1)
		release(t, s, l2)
	})
}

// A reference or stream dropped without Release/Close has its C handle freed by a finalizer (a
// safety net only), which deletes nothing: the layer stays, unreferenced, as after a restart,
// and a later Get+Release deletes it as usual.
func TestFinalizersDeleteNothing(t *testing.T) {
	s := openStore(t, "exact")
	var id ChainID
	func() {
		l := register(t, s, makeTar(t, file("lost", "x")), "")
		id = l.ChainID()
		rc, err := l.TarStream()
		if err != nil {
			t.Fatal(err)
		}
		_ = rc
		// A released layer whose stream is forgotten: not deleted by the GC either.
		l2 := register(t, s, makeTar(t, file("lost2", "y")), "")
		if _, err := l2.TarStream(); err != nil {
			t.Fatal(err)
		}
		release(t, s, l2)
	}()
	open := func() int {
		s.trackMu.Lock()
		defer s.trackMu.Unlock()
		return len(s.handles) + len(s.streams)
	}
	for i := 0; i < 100 && open() != 0; i++ {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	if n := open(); n != 0 {
		t.Fatalf("%d C handles left after the finalizers", n)
	}
	if n := len(s.Map()); n != 2 {
		t.Fatalf("%d layers after the finalizers, want 2 (they delete nothing)", n)
	}
	l, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if m := release(t, s, l); len(m) != 1 || m[0].ChainID != id {
		t.Errorf("Get+Release after the finalizer removed %+v", m)
	}
}

// Releasing a layer whose ancestors were never looked at, while an unrelated layer is pinned:
// the release walks up the chain (opening ancestors briefly) and deletes it all, and the
// pinned layer stays.
func TestReleaseWalksUnknownAncestors(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		root := t.TempDir()
		var a, b, c, d ChainID
		{
			s := openAt(t, root, driver)
			la := register(t, s, makeTar(t, file("a", "a")), "")
			lb := register(t, s, makeTar(t, file("b", "b")), la.ChainID())
			lc := register(t, s, makeTar(t, file("c", "c")), lb.ChainID())
			ld := register(t, s, makeTar(t, file("d", "d")), "")
			a, b, c, d = la.ChainID(), lb.ChainID(), lc.ChainID(), ld.ChainID()
			s.Close()
		}
		s := openAt(t, root, driver)
		if _, err := s.view(d); err != nil { // pins d only
			t.Fatal(err)
		}
		lc, err := s.Get(c)
		if err != nil {
			t.Fatal(err)
		}
		removed := release(t, s, lc)
		if len(removed) != 3 || removed[0].ChainID != c || removed[1].ChainID != b || removed[2].ChainID != a {
			t.Errorf("removed %+v", removed)
		}
		if m := s.Map(); len(m) != 1 || m[d] == nil {
			t.Errorf("left %v, want only %s", m, d)
		}
	})
}
