// SPDX-License-Identifier: Apache-2.0

package mobylayer

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/docker/distribution"
	"github.com/docker/docker/layer"
	rolayer "github.com/librolayer/rolayer/bindings/go"
	"github.com/opencontainers/go-digest"
)

func tarOf(t *testing.T, name, body string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	if err := w.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, body); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func openStore(t *testing.T) *Store {
	t.Helper()
	rs, err := rolayer.Open(t.TempDir(), &rolayer.Options{Driver: "exact"})
	if err != nil {
		t.Fatal(err)
	}
	s := New(rs)
	t.Cleanup(func() { s.Cleanup() })
	return s
}

// export reads a layer through the engine's interface only.
func export(t *testing.T, ts layer.TarStreamer) []byte {
	t.Helper()
	rc, err := ts.TarStream()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// What an engine caller does with layer.Store/layer.Layer values works on a rolayer store.
func TestEngineInterfaces(t *testing.T) {
	var s ReadOnlyStore = openStore(t)
	baseTar, childTar := tarOf(t, "etc/os-release", "ID=test\n"), tarOf(t, "app", "#!/bin/sh\n")
	base, err := s.Register(bytes.NewReader(baseTar), "")
	if err != nil {
		t.Fatal(err)
	}
	child, err := s.Register(bytes.NewReader(childTar), base.ChainID())
	if err != nil {
		t.Fatal(err)
	}
	// The engine's own ChainID computation agrees.
	if want := layer.CreateChainID([]layer.DiffID{base.DiffID(), child.DiffID()}); child.ChainID() != want {
		t.Fatalf("ChainID %s, engine computes %s", child.ChainID(), want)
	}
	if base.DiffID() != layer.DiffID(digest.FromBytes(baseTar)) {
		t.Fatalf("DiffID %s", base.DiffID())
	}
	if !bytes.Equal(export(t, child), childTar) || !bytes.Equal(export(t, base), baseTar) {
		t.Fatal("TarStream through layer.TarStreamer differs")
	}
	if p := child.Parent(); p == nil || p.ChainID() != base.ChainID() {
		t.Fatalf("child.Parent() = %v", p)
	}
	if p := base.Parent(); p != nil {
		t.Fatalf("base.Parent() = %#v, want a nil layer.Layer", p)
	}
	if child.Size() != base.DiffSize()+child.DiffSize() || child.DiffSize() != int64(len("#!/bin/sh\n")) {
		t.Fatalf("sizes: %d, %d", child.Size(), child.DiffSize())
	}
	if _, err := child.Metadata(); err != nil {
		t.Fatal(err)
	}
	// The engine's cache-id: the driver's id, per layer, the same through a description.
	cid := child.(*Layer).CacheID()
	if cid == "" || cid == base.(*Layer).CacheID() || cid != child.(*Layer).Unwrap().CacheID() {
		t.Fatalf("CacheID %q (base %q)", cid, base.(*Layer).CacheID())
	}
	if p := child.Parent(); p.(*Layer).CacheID() != base.(*Layer).CacheID() {
		t.Fatalf("the parent's CacheID %q, want %q", p.(*Layer).CacheID(), base.(*Layer).CacheID())
	}
	rc, err := child.TarStreamFrom(base.ChainID())
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()

	m := s.Map()
	if len(m) != 2 || m[child.ChainID()] == nil || m[base.ChainID()] == nil {
		t.Fatalf("Map: %v", m)
	}
	if _, err := s.Release(m[base.ChainID()]); !errors.Is(err, layer.ErrLayerNotRetained) {
		t.Fatalf("Release of a Map description: %v, want layer.ErrLayerNotRetained", err)
	}
	if _, err := s.Get(layer.ChainID("sha256:" + string(bytes.Repeat([]byte("0"), 64)))); !errors.Is(err, layer.ErrLayerDoesNotExist) ||
		!errors.Is(err, rolayer.ErrLayerDoesNotExist) {
		t.Fatalf("Get of an unknown layer: %v", err)
	}
	if _, err := s.Register(bytes.NewReader(childTar), layer.ChainID("sha256:"+string(bytes.Repeat([]byte("1"), 64)))); !errors.Is(err, layer.ErrLayerDoesNotExist) {
		t.Fatalf("Register on an unknown parent: %v", err)
	}

	if md, err := s.Release(base); err != nil || len(md) != 0 {
		t.Fatalf("Release(base) = %v, %v; the child keeps it", md, err)
	}
	md, err := s.Release(child)
	if err != nil || len(md) != 2 || md[0].ChainID != child.ChainID() || md[1].DiffID != base.DiffID() {
		t.Fatalf("Release(child) = %+v, %v", md, err)
	}
	if _, err := s.Release(child); !errors.Is(err, layer.ErrLayerNotRetained) {
		t.Fatalf("second Release: %v", err)
	}
	if s.DriverName() != "exact" || len(s.DriverStatus()) == 0 {
		t.Fatalf("driver %q %v", s.DriverName(), s.DriverStatus())
	}
}

// The engine's empty layer and the binding's are the same bytes and ids; registered, the
// engine's EmptyLayer stream gives layer.DigestSHA256EmptyTar.
func TestEmptyLayer(t *testing.T) {
	if string(rolayer.DigestSHA256EmptyTar) != string(layer.DigestSHA256EmptyTar) {
		t.Fatalf("%s != %s", rolayer.DigestSHA256EmptyTar, layer.DigestSHA256EmptyTar)
	}
	if !bytes.Equal(export(t, layer.EmptyLayer), export(t, rolayer.EmptyLayer)) {
		t.Fatal("the empty layers' streams differ")
	}
	s := openStore(t)
	l, err := s.Register(bytes.NewReader(export(t, layer.EmptyLayer)), "")
	if err != nil {
		t.Fatal(err)
	}
	if l.DiffID() != layer.DigestSHA256EmptyTar || !layer.IsEmpty(l.DiffID()) || l.ChainID() != layer.EmptyLayer.ChainID() {
		t.Fatalf("registered the empty layer as %s", l.DiffID())
	}
	if _, err := s.Release(l); err != nil {
		t.Fatal(err)
	}
}

func TestDescriptor(t *testing.T) {
	s := openStore(t)
	data := tarOf(t, "f", "x")
	d := distribution.Descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: digest.FromBytes(data), Size: int64(len(data))}
	l, err := s.RegisterWithDescriptor(bytes.NewReader(data), "", d)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release(l)
	dl, ok := l.(interface {
		Descriptor() distribution.Descriptor
	})
	if !ok {
		t.Fatal("not a layer.DescribableLayer")
	}
	if got := dl.Descriptor(); got.MediaType != d.MediaType || got.Digest != d.Digest || got.Size != d.Size {
		t.Fatalf("Descriptor = %+v, want %+v", got, d)
	}
	plain, err := s.Register(bytes.NewReader(tarOf(t, "g", "y")), "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release(plain)
	if got := plain.(*Layer).Descriptor(); got.Digest != "" || got.Size != 0 {
		t.Fatalf("no descriptor given, got %+v", got)
	}
}
