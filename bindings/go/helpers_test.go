// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// drivers are the built-in drivers every driver-independent test runs on.
var drivers = []string{"exact", "dir"}

// openStore opens a fresh store in a temporary directory, closed at the end of the test. A
// driver the library does not have yet (ROLAYER_EINVAL "unknown driver") skips the test.
func openStore(t testing.TB, driver string) *Store {
	t.Helper()
	return openAt(t, t.TempDir(), driver)
}

func openAt(t testing.TB, root, driver string) *Store {
	t.Helper()
	s, err := Open(root, &Options{Driver: driver})
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == CodeInvalid && strings.Contains(e.Message, "unknown driver") {
			t.Skipf("driver %q is not in this build of the library: %v", driver, err)
		}
		t.Fatalf("Open(%q): %v", driver, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// forEachDriver runs f as a subtest per driver.
func forEachDriver(t *testing.T, f func(t *testing.T, driver string)) {
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) { f(t, d) })
	}
}

type entry struct {
	name string
	body string
	dir  bool
}

// makeTar writes a tar with the given entries (files, or directories when dir is set).
func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if e.dir {
			h = &tar.Header{Name: e.name, Mode: 0o755, Typeflag: tar.TypeDir, Format: tar.FormatPAX}
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if !e.dir {
			if _, err := io.WriteString(w, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func file(name, body string) entry { return entry{name: name, body: body} }

// emptyTar is the Docker engine's empty layer: 1024 zero bytes.
var emptyTar = make([]byte, 1024)

const (
	emptyDiffID       = DiffID("sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")
	emptyOnEmptyChain = ChainID("sha256:170b376f64fb30995c140276be3d71dfb256b308d86183ca3b22aa93a79ad548")
)

func register(t testing.TB, s *Store, data []byte, parent ChainID) Layer {
	t.Helper()
	l, err := s.Register(bytes.NewReader(data), parent)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return l
}

func release(t testing.TB, s *Store, l Layer) []Metadata {
	t.Helper()
	m, err := s.Release(l)
	if err != nil {
		t.Fatalf("Release(%s): %v", l.ChainID(), err)
	}
	return m
}

func readAll(t testing.TB, rc io.ReadCloser, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read stream: %v", err)
	}
	return b
}

func codeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeOK
}

func export(t testing.TB, l Layer) []byte {
	t.Helper()
	rc, err := l.TarStream()
	return readAll(t, rc, err)
}
