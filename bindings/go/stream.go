// SPDX-License-Identifier: Apache-2.0

package rolayer

/*
#include <rolayer.h>
*/
import "C"

import (
	"io"
	"runtime"
	"sync"
	"unsafe"
)

const (
	streamBufSize = 1 << 20   // one C call per MiB for small reads
	directRead    = 256 << 10 // reads at least this large go straight into the caller's buffer
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, streamBufSize); return &b }}

// tarStream is a C tar stream as an io.ReadCloser (and io.WriterTo). The C stream is used by one
// goroutine at a time, so every call takes mu; it may be used from many goroutines in turn.
type tarStream struct {
	s      *Store
	layer  ChainID
	diffID DiffID // "" for an unverified stream
	pin    *pin   // a description's stream: the pin it holds (under the store's refMu)

	mu     sync.Mutex
	h      *C.rolayer_tar_stream // nil once closed
	closed bool
	buf    *[]byte
	r, w   int
	err    error // sticky: io.EOF or the stream's error
}

func (s *Store) newStream(h *C.rolayer_tar_stream, layer ChainID, diffID DiffID) *tarStream {
	s.trackStream(h)
	t := &tarStream{s: s, layer: layer, diffID: diffID, h: h}
	runtime.SetFinalizer(t, (*tarStream).finalize)
	return t
}

// finalize is the safety net for a stream dropped without Close: it frees the C stream but,
// like a reference's finalizer, deletes nothing (the layer is pinned first when it can be).
func (t *tarStream) finalize() {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.h
	if t.closed || h == nil {
		return
	}
	t.closed, t.h = true, nil
	s := t.s
	if !s.gate.enter() {
		return
	}
	defer s.gate.exit()
	s.refMu.Lock()
	if p, err := s.pinLocked(t.layer); err == nil { // the stream holds the layer: found
		p.kept = true
	}
	C.rolayer_tar_stream_free(h)
	s.unpinStreamLocked(t)
	s.refMu.Unlock()
	s.untrackStream(h)
}

// unpinStreamLocked gives back the pin a description's stream holds. refMu is held.
func (s *Store) unpinStreamLocked(t *tarStream) {
	if p := t.pin; p != nil {
		t.pin = nil
		p.streams--
		s.unpinLocked(p)
	}
}

// fill reads from the C stream into p (len(p) > 0); mu is held.
func (t *tarStream) fill(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	if !t.s.gate.enter() {
		return 0, errClosed("store")
	}
	defer t.s.gate.exit()
	var n C.size_t
	var cerr *C.rolayer_error
	// p is Go memory without Go pointers, passed for the duration of the call only.
	rc := C.rolayer_tar_stream_read(t.h, unsafe.Pointer(&p[0]), C.size_t(len(p)), &n, &cerr)
	runtime.KeepAlive(t)
	if rc != 0 {
		t.err = verifyErr(fromC(rc, cerr), t.diffID)
		return 0, t.err
	}
	if n == 0 {
		t.err = io.EOF
		return 0, io.EOF
	}
	return int(n), nil
}

func (t *tarStream) Read(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, errClosed("stream")
	}
	if t.r < t.w {
		n := copy(p, (*t.buf)[t.r:t.w])
		t.r += n
		return n, nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) >= directRead {
		return t.fill(p)
	}
	if t.buf == nil {
		t.buf = bufPool.Get().(*[]byte)
	}
	n, err := t.fill(*t.buf)
	if err != nil {
		return 0, err
	}
	t.r, t.w = 0, n
	k := copy(p, (*t.buf)[:n])
	t.r = k
	return k, nil
}

// WriteTo copies the rest of the stream to w in 1 MiB pieces (io.Copy uses it). A failed
// verification is its error, after the stream's bytes were written.
func (t *tarStream) WriteTo(w io.Writer) (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, errClosed("stream")
	}
	var total int64
	if t.r < t.w {
		n, err := w.Write((*t.buf)[t.r:t.w])
		total += int64(n)
		t.r += n
		if err != nil {
			return total, err
		}
	}
	if t.buf == nil {
		t.buf = bufPool.Get().(*[]byte)
	}
	for {
		n, err := t.fill(*t.buf)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		t.r, t.w = 0, n
		m, werr := w.Write((*t.buf)[:n])
		total += int64(m)
		t.r = m
		if werr != nil {
			return total, werr
		}
		if m < n {
			return total, io.ErrShortWrite
		}
	}
}

// Close frees the stream; closing early is fine. It is idempotent and returns nil.
func (t *tarStream) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	runtime.SetFinalizer(t, nil)
	if t.buf != nil {
		bufPool.Put(t.buf)
		t.buf = nil
		t.r, t.w = 0, 0
	}
	h := t.h
	t.h = nil
	s := t.s
	if !s.gate.enter() {
		return nil // Close of the store freed it
	}
	defer s.gate.exit()
	// Freeing a stream drops its reference: it may delete a released layer (see pins.go).
	s.refMu.Lock()
	C.rolayer_tar_stream_free(h)
	s.unpinStreamLocked(t)
	s.refMu.Unlock()
	s.untrackStream(h)
	runtime.KeepAlive(t)
	return nil
}
