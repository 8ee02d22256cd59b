// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
)

// EmptyLayer is the 1024 zero bytes whose digest is DigestSHA256EmptyTar, and the library
// registers those bytes under that very id.
func TestEmptyLayerValue(t *testing.T) {
	if got := DiffID(fmt.Sprintf("sha256:%x", sha256.Sum256(make([]byte, 1024)))); got != DigestSHA256EmptyTar {
		t.Fatalf("sha256 of 1024 zero bytes = %s, constant %s", got, DigestSHA256EmptyTar)
	}
	data := export(t, EmptyLayer)
	if !bytes.Equal(data, make([]byte, 1024)) {
		t.Fatalf("EmptyLayer.TarStream: %d bytes", len(data))
	}
	if EmptyLayer.ChainID() != ChainID(DigestSHA256EmptyTar) || EmptyLayer.DiffID() != DigestSHA256EmptyTar ||
		EmptyLayer.Parent() != nil || EmptyLayer.Size() != 0 || EmptyLayer.DiffSize() != 0 || EmptyLayer.Verify() != nil {
		t.Fatal("EmptyLayer's getters")
	}
	if rc, err := EmptyLayer.TarStreamFrom(""); err != nil {
		t.Fatal(err)
	} else if got := readAll(t, rc, nil); !bytes.Equal(got, data) {
		t.Fatal("TarStreamFrom(\"\")")
	}
	if _, err := EmptyLayer.TarStreamFrom(ChainID(DigestSHA256EmptyTar)); !errors.Is(err, ErrNotAncestor) {
		t.Fatalf("TarStreamFrom(a parent): %v", err)
	}
	if md, err := EmptyLayer.Metadata(); err != nil || md == nil || len(md) != 0 {
		t.Fatalf("Metadata: %v, %v", md, err)
	}
	if !IsEmpty(DigestSHA256EmptyTar) || IsEmpty(DiffID(emptyOnEmptyChain)) {
		t.Fatal("IsEmpty")
	}
	forEachDriver(t, func(t *testing.T, driver string) {
		s := openStore(t, driver)
		l := register(t, s, export(t, EmptyLayer), "")
		if l.DiffID() != DigestSHA256EmptyTar || l.ChainID() != EmptyLayer.ChainID() {
			t.Fatalf("registered EmptyLayer's stream as %s / %s", l.ChainID(), l.DiffID())
		}
		if _, err := s.Release(EmptyLayer); !errors.Is(err, ErrLayerNotRetained) {
			t.Fatalf("Release(EmptyLayer): %v", err)
		}
		release(t, s, l)
	})
}

func TestDriverStatus(t *testing.T) {
	s := openStore(t, "exact")
	l := register(t, s, emptyTar, "")
	st := s.DriverStatus()
	release(t, s, l)
	got := map[string]string{}
	for _, kv := range st {
		got[kv[0]] = kv[1]
	}
	if got["Root Dir"] != s.Root() || got["Driver"] != "exact" || got["Layers"] != "1" ||
		got["Library"] != "librolayer "+Version() {
		t.Fatalf("DriverStatus = %v", st)
	}
	s.Close()
	for _, kv := range s.DriverStatus() {
		if kv[0] == "Layers" {
			t.Fatalf("a closed store reports %v", kv)
		}
	}
}
