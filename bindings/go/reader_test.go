// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var errReader = errors.New("the network went away")

// failingReader returns n bytes of data, then err.
type failingReader struct {
	data []byte
	n    int
	err  error
	pos  int
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.pos >= r.n {
		return 0, r.err
	}
	k := copy(p, r.data[r.pos:min(r.n, len(r.data))])
	r.pos += k
	return k, nil
}

type panickingReader struct {
	r     io.Reader
	after int
	read  int
}

func (p *panickingReader) Read(b []byte) (int, error) {
	if p.read >= p.after {
		panic("reader exploded")
	}
	if len(b) > p.after-p.read {
		b = b[:p.after-p.read]
	}
	n, err := p.r.Read(b)
	p.read += n
	return n, err
}

// oneByteReader feeds a byte per Read (the binding still fills the library's buffer).
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) { return o.r.Read(p[:min(1, len(p))]) }

func storeIsEmpty(t *testing.T, s *Store) {
	t.Helper()
	if m := s.Map(); len(m) != 0 {
		t.Errorf("the store has %d layers", len(m))
	}
	for _, dir := range []string{"exact", "tmp"} {
		ents, _ := os.ReadDir(filepath.Join(s.Root(), dir))
		if len(ents) != 0 {
			t.Errorf("%s/ has %d entries left behind", dir, len(ents))
		}
	}
}

func TestReaderFails(t *testing.T) {
	s := openStore(t, "exact")
	data := makeTar(t, file("big", strings.Repeat("x", 3<<20)))
	for _, at := range []int{0, 700, 2 << 20} {
		_, err := s.Register(&failingReader{data: data, n: at, err: errReader}, "")
		if !errors.Is(err, errReader) {
			t.Fatalf("failing at %d: %v, want the reader's error", at, err)
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeCallback || !errors.Is(err, ErrCallback) || !strings.Contains(e.Error(), errReader.Error()) {
			t.Errorf("failing at %d: %#v", at, err)
		}
	}
	storeIsEmpty(t, s)
	// A reader that makes no progress.
	if _, err := s.Register(&failingReader{data: data, n: 0, err: nil}, ""); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("no progress: %v", err)
	}
	// The store works afterwards; tiny reads are fine.
	l, err := s.Register(oneByteReader{bytes.NewReader(data)}, "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(export(t, l), data) {
		t.Error("export differs")
	}
	release(t, s, l)
	storeIsEmpty(t, s)
}

func TestReaderPanics(t *testing.T) {
	s := openStore(t, "exact")
	data := makeTar(t, file("f", strings.Repeat("y", 2<<20)))
	for _, after := range []int{0, 100, 1 << 20} {
		_, err := s.Register(&panickingReader{r: bytes.NewReader(data), after: after}, "")
		var p *ReaderPanicError
		if !errors.As(err, &p) || p.Value != "reader exploded" || len(p.Stack) == 0 {
			t.Fatalf("panicking after %d: %v", after, err)
		}
		if !errors.Is(err, ErrCallback) || !strings.Contains(err.Error(), "reader exploded") {
			t.Errorf("panicking after %d: %v", after, err)
		}
	}
	// A panic with an error value unwraps to it.
	_, err := s.Register(&panickingReader{r: errPanicker{}, after: 1}, "")
	if !errors.Is(err, errReader) {
		t.Errorf("panic(error): %v", err)
	}
	storeIsEmpty(t, s)
	l := register(t, s, data, "")
	release(t, s, l)
}

type errPanicker struct{}

func (errPanicker) Read([]byte) (int, error) { panic(errReader) }
