// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// cancelAfter is a reader that cancels its context after n bytes and counts the Reads made
// after that.
type cancelAfter struct {
	r       io.Reader
	n       int
	cancel  context.CancelFunc
	after   int
	readN   int
	stopped bool
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.stopped {
		c.after++
	}
	if len(p) > 4096 {
		p = p[:4096]
	}
	m, err := c.r.Read(p)
	c.readN += m
	if c.readN >= c.n && !c.stopped {
		c.stopped = true
		c.cancel()
	}
	return m, err
}

// A cancelled context stops a registration between reads, through the library's read callback:
// the error wraps context.Canceled, the reader is not read again, nothing is left behind.
func TestRegisterContextCancelledMidStream(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		s := openStore(t, driver)
		big := makeTar(t, file("big", string(bytes.Repeat([]byte("x"), 3<<20))))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := &cancelAfter{r: bytes.NewReader(big), n: 64 << 10, cancel: cancel}
		l, err := s.RegisterContext(ctx, r, "")
		if err == nil {
			t.Fatalf("registered %s despite the cancellation", l.ChainID())
		}
		if !errors.Is(err, context.Canceled) || codeOf(err) != CodeCallback {
			t.Fatalf("err = %v (code %v), want context.Canceled through CodeCallback", err, codeOf(err))
		}
		if r.after != 0 {
			t.Fatalf("the reader was read %d times after the cancellation", r.after)
		}
		if r.readN >= len(big) {
			t.Fatal("the whole stream was read")
		}
		if m := s.Map(); len(m) != 0 {
			t.Fatalf("a cancelled registration left %d layers", len(m))
		}
		// An uncancelled context registers as Register does.
		l, err = s.RegisterContext(context.Background(), bytes.NewReader(big), "")
		if err != nil {
			t.Fatal(err)
		}
		release(t, s, l)
	})
}

func TestRegisterContextAlreadyDone(t *testing.T) {
	s := openStore(t, "exact")
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	if _, err := s.RegisterContext(ctx, bytes.NewReader(emptyTar), ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if len(s.Map()) != 0 {
		t.Fatal("a registration with a done context left a layer")
	}
}

// Export and verify stop between reads once the context is done; the layer is untouched.
func TestExportAndVerifyContext(t *testing.T) {
	s := openStore(t, "dir")
	data := makeTar(t, file("big", string(bytes.Repeat([]byte("y"), 5<<20))))
	l := register(t, s, data, "")
	defer release(t, s, l)

	var out bytes.Buffer
	n, err := ExportContext(context.Background(), l, &out)
	if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("ExportContext: %d bytes, %v", n, err)
	}
	if err := VerifyContext(context.Background(), l); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	w := &cancelWriter{cancel: cancel, after: 1 << 20}
	n, err = ExportContext(ctx, l, w)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ExportContext after cancel: %v", err)
	}
	if n >= int64(len(data)) {
		t.Fatalf("exported all %d bytes despite the cancellation", n)
	}
	if err := VerifyContext(ctx, l); !errors.Is(err, context.Canceled) {
		t.Fatalf("VerifyContext with a cancelled context: %v", err)
	}
	rc, err := TarStreamContext(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, rc, nil); !bytes.Equal(got, data) {
		t.Fatal("TarStreamContext exported other bytes")
	}
	if err := l.Verify(); err != nil {
		t.Fatalf("the layer after the cancelled export: %v", err)
	}
}

// cancelWriter cancels its context once it has taken `after` bytes.
type cancelWriter struct {
	cancel context.CancelFunc
	after  int
	n      int
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	if w.n >= w.after {
		w.cancel()
	}
	return len(p), nil
}

// VerifyContext finds a tampered layer as Verify does.
func TestVerifyContextFindsTampering(t *testing.T) {
	s := openStore(t, "exact")
	l := register(t, s, makeTar(t, file("f", "original")), "")
	defer release(t, s, l)
	path := exactLayerFile(t, s.Root())
	stored, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	stored[len(stored)-1024-3] ^= 0x20
	if err := os.WriteFile(path, stored, 0o600); err != nil {
		t.Fatal(err)
	}
	err = VerifyContext(context.Background(), l)
	var ve *VerificationError
	if !errors.As(err, &ve) {
		t.Fatalf("VerifyContext on a tampered layer: %v, want a *VerificationError", err)
	}
}
