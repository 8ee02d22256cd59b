// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	rolayer "github.com/librolayer/rolayer/bindings/go"
)

// The committed fixture (tests/docker/fixture-vfs): a 2-layer image loaded by dockerd 20.10 (vfs).
const (
	base = rolayer.ChainID("sha256:b1162fda67a9705057b015ca3aa2c7321b0ffcf47ae8742153cd3f2272a975f7")
	top  = rolayer.ChainID("sha256:3a073f3d534f5cf51952ef675d12f55dd4c9846525dc296bc30177bd8c03631c")
	// sha256 of the top layer's tar stream (the one `docker save` gives, as fixture_cli_test.sh checks).
	topStreamSHA = "1e92951b88c83031f52e5273ebb8041940c79517180d3116b12e88fcec515236"
)

// fixture copies the committed data root into a temporary directory (tests may damage it).
func fixture(t *testing.T) string {
	t.Helper()
	src, err := filepath.Abs("../../../tests/docker/fixture-vfs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(src, "image")); err != nil {
		t.Fatalf("the fixture is missing: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "root")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy the fixture: %v: %s", err, out)
	}
	return dst
}

func open(t *testing.T, root string) *Root {
	t.Helper()
	r, err := Open(root, "")
	if err != nil {
		t.Fatalf("Open(%s): %v", root, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func hashStream(t *testing.T, rc io.ReadCloser) (string, int64, error) {
	t.Helper()
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

func TestLayersAndResolve(t *testing.T) {
	root := fixture(t)
	r := open(t, root)
	if d := r.Driver(); d != "vfs" {
		t.Errorf("Driver() = %q, want vfs", d)
	}
	ls, err := r.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].ChainID != base || ls[1].ChainID != top {
		t.Fatalf("Layers() = %+v, want [base top]", ls)
	}
	if ls[0].Parent != "" || ls[1].Parent != base {
		t.Errorf("parents %q %q", ls[0].Parent, ls[1].Parent)
	}
	for _, l := range ls {
		cache, err := os.ReadFile(filepath.Join(root, "image/vfs/layerdb/sha256", strings.TrimPrefix(string(l.ChainID), "sha256:"), "cache-id"))
		if err != nil {
			t.Fatal(err)
		}
		if l.CacheID != strings.TrimSpace(string(cache)) || l.Damaged != "" || !strings.HasPrefix(string(l.DiffID), "sha256:") {
			t.Errorf("layer %+v (cache-id file %q)", l, cache)
		}
		if l.Descriptor.Size != -1 || l.Descriptor.Digest != "" {
			t.Errorf("descriptor of a non-foreign layer: %+v", l.Descriptor)
		}
		if l.Size < 0 {
			t.Errorf("size %d", l.Size)
		}
	}
	one, err := r.Layer(string(top))
	if err != nil || one != ls[1] {
		t.Errorf("Layer(top) = %+v, %v; want %+v", one, err, ls[1])
	}
	if _, err := r.Layer("sha256:" + strings.Repeat("0", 64)); !errors.Is(err, rolayer.ErrLayerDoesNotExist) {
		t.Errorf("Layer of an unknown ChainID: %v", err)
	}
	if _, err := r.Layer("sha256:xyz"); !errors.Is(err, rolayer.ErrInvalid) {
		t.Errorf("Layer of a malformed ChainID: %v", err)
	}
	for _, ref := range []string{"fixture:2layers", "docker.io/library/fixture:2layers", string(top), "3a073f"} {
		chain, err := r.Resolve(ref)
		if err != nil || len(chain) != 2 || chain[0] != base || chain[1] != top {
			t.Errorf("Resolve(%q) = %v, %v; want [base top]", ref, chain, err)
		}
	}
	if chain, err := r.Resolve(string(base)); err != nil || len(chain) != 1 || chain[0] != base {
		t.Errorf("Resolve(base) = %v, %v", chain, err)
	}
	if _, err := r.Resolve("nosuch:tag"); !errors.Is(err, rolayer.ErrLayerDoesNotExist) {
		t.Errorf("Resolve of an unknown image: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "none"), ""); !errors.Is(err, rolayer.ErrLayerDoesNotExist) {
		t.Errorf("Open of a missing root: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "zfs/image/zfs/layerdb/sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Open(filepath.Join(dir, "zfs"), "")
	var e *rolayer.Error
	if !errors.Is(err, rolayer.ErrUnsupported) || !errors.As(err, &e) || !strings.Contains(e.Message, "zfs") {
		t.Errorf("Open of a zfs root: %v", err)
	}
	if _, err := Open(fixture(t), "overlay2"); err == nil {
		t.Error("Open of a vfs root as overlay2 succeeded")
	}
}

func TestStreamAndVerify(t *testing.T) {
	r := open(t, fixture(t))
	rc, err := r.TarStream(string(top))
	if err != nil {
		t.Fatal(err)
	}
	sum, n, err := hashStream(t, rc)
	if err != nil || sum != topStreamSHA {
		t.Fatalf("top stream sha256 %s (%d bytes), %v; want %s", sum, n, err, topStreamSHA)
	}
	if _, err := rc.Read(make([]byte, 1)); !errors.Is(err, rolayer.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if size, err := r.Verify(string(top)); err != nil || size != n {
		t.Errorf("Verify(top) = %d, %v; want %d", size, err, n)
	}
	ls, _ := r.Layers()
	// Each stream's sha256 is its DiffID; several streams at once from many goroutines.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		for _, l := range ls {
			wg.Add(1)
			go func(l Layer) {
				defer wg.Done()
				rc, err := r.TarStream(string(l.ChainID))
				if err != nil {
					t.Error(err)
					return
				}
				if sum, _, err := hashStream(t, rc); err != nil || "sha256:"+sum != string(l.DiffID) {
					t.Errorf("stream of %s: sha256:%s, %v; want its DiffID %s", l.ChainID, sum, err, l.DiffID)
				}
			}(l)
		}
	}
	wg.Wait()
	// A stream outlives its root.
	rc, err = r.TarStream(string(base))
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := r.Layers(); !errors.Is(err, rolayer.ErrClosed) {
		t.Errorf("Layers after Close: %v", err)
	}
	if _, err := r.Verify(string(base)); !errors.Is(err, rolayer.ErrClosed) {
		t.Errorf("Verify after Close: %v", err)
	}
	if r.Driver() != "" {
		t.Error("Driver after Close")
	}
	if sum, _, err := hashStream(t, rc); err != nil || "sha256:"+sum != string(ls[0].DiffID) {
		t.Errorf("stream after the root's Close: %s, %v", sum, err)
	}
	if _, err := r.TarStream(string(base)); !errors.Is(err, rolayer.ErrClosed) {
		t.Errorf("TarStream after Close: %v", err)
	}
}

func TestDamage(t *testing.T) {
	root := fixture(t)
	r := open(t, root)
	l, err := r.Layer(string(top))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "vfs/dir", l.CacheID, "etc/hello"), []byte("chanGed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error) {
		t.Helper()
		var v *rolayer.VerificationError
		if !errors.As(err, &v) || !errors.Is(err, rolayer.ErrCorrupt) || v.Path != "etc/hello" || !strings.Contains(err.Error(), "content differs") {
			t.Errorf("%s of a changed file: %v (%#v)", what, err, v)
		}
	}
	_, err = r.Verify(string(top))
	check("Verify", err)
	rc, err := r.TarStream(string(top))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	check("a stream read", err)
	if strings.Contains(string(got), "chanGed") {
		t.Error("the changed bytes were returned")
	}
	rc.Close()
	// The base layer is intact.
	if _, err := r.Verify(string(base)); err != nil {
		t.Errorf("Verify(base): %v", err)
	}
	// Metadata damage: a layer without `diff` is listed last, with why.
	if err := os.Remove(filepath.Join(root, "image/vfs/layerdb/sha256", strings.TrimPrefix(string(base), "sha256:"), "diff")); err != nil {
		t.Fatal(err)
	}
	ls, err := r.Layers()
	if err != nil {
		t.Fatal(err)
	}
	last := ls[len(ls)-1]
	if last.ChainID != base || last.Damaged == "" || last.DiffID != "" {
		t.Errorf("layers with a damaged base: %+v", ls)
	}
	if _, err := r.Layer(string(base)); !errors.Is(err, rolayer.ErrCorrupt) {
		t.Errorf("Layer of a damaged layer: %v", err)
	}
}
