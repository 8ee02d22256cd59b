// SPDX-License-Identifier: Apache-2.0

package rolayer

/*
#include <stdlib.h>
#include <rolayer.h>
*/
import "C"

import (
	"io"
	"runtime"
	"sync"
	"unsafe"

	"github.com/opencontainers/go-digest"
)

// Layer is a read-only layer, shaped like the Docker engine's layer.Layer (plus Descriptor, as
// its DescribableLayer, and Verify). All methods are safe for concurrent use.
//
// A Layer from Register or Get is a reference: give it back with Store.Release. A Layer from
// Map or Parent is a description that holds no reference (see Store.Map).
type Layer interface {
	// TarStream returns the registered tar stream, byte for byte, verified against the DiffID
	// as it is read: a mismatch is the error of the Read that would have returned io.EOF (a
	// *VerificationError), never only of Close. The stream keeps the layer alive until closed.
	TarStream() (io.ReadCloser, error)
	// TarStreamFrom returns the diff between this layer and its ancestor parent ("" = the
	// whole flattened chain), verified on every driver: against the immediate parent it is
	// the registered stream; against an older ancestor or the whole chain it is built from the
	// layers' verified streams (whiteouts applied in tar order). ErrNotAncestor when parent is
	// not in the chain.
	TarStreamFrom(parent ChainID) (io.ReadCloser, error)
	ChainID() ChainID
	DiffID() DiffID
	// Parent describes the parent layer (no reference; see Store.Map), or is nil for a base
	// layer (and when the store was closed before the parent was ever looked at).
	Parent() Layer
	// Size is DiffSize summed over the chain.
	Size() int64
	// DiffSize is the regular-file payload bytes of this layer.
	DiffSize() int64
	// Metadata is the driver's key/value description of the layer.
	Metadata() (map[string]string, error)
	// Descriptor is the distribution descriptor given to RegisterWithDescriptor (the zero
	// Descriptor with Size -1 when none was).
	Descriptor() Descriptor
	// Verify reads the whole stream and discards it: nil when it matches its DiffID, else a
	// *VerificationError.
	Verify() error
	// CacheID is the id under which the store's driver keeps the layer's files (the id a
	// custom Driver is called with), like the Docker engine's cache-id; fixed when the layer is
	// registered, and not the ChainID. "" for EmptyLayer, which no store holds.
	CacheID() string
}

func digestOf(s string) digest.Digest { return digest.Digest(s) }

type layerBase struct {
	s    *Store
	info *layerInfo

	parentOnce sync.Once
	parent     Layer
}

func (b *layerBase) ChainID() ChainID       { return b.info.chainID }
func (b *layerBase) DiffID() DiffID         { return b.info.diffID }
func (b *layerBase) Size() int64            { return b.info.size }
func (b *layerBase) DiffSize() int64        { return b.info.diffSize }
func (b *layerBase) Descriptor() Descriptor { return b.info.desc }
func (b *layerBase) CacheID() string        { return b.info.cacheID }

// StreamSize is the length in bytes of the registered tar stream.
func (b *layerBase) StreamSize() int64 { return b.info.streamSize }

// Depth is the layer's depth in its chain (1 for a base layer).
func (b *layerBase) Depth() int { return b.info.depth }

func (b *layerBase) String() string { return string(b.info.chainID) }

func (b *layerBase) Parent() Layer {
	if b.info.parent == "" {
		return nil
	}
	b.parentOnce.Do(func() {
		if v, err := b.s.view(b.info.parent); err == nil {
			b.parent = v
		}
	})
	return b.parent
}

// layerRef is a reference: a C layer handle, given back by Store.Release (or, as a safety net
// that deletes nothing, by its finalizer).
type layerRef struct {
	layerBase
	mu sync.RWMutex // write-locked to release h; read-locked around every use of h
	h  *C.rolayer_layer
}

func (s *Store) newRef(h *C.rolayer_layer) *layerRef {
	in := readInfo(h)
	s.remember(in)
	s.track(h)
	r := &layerRef{layerBase: layerBase{s: s, info: in}, h: h}
	runtime.SetFinalizer(r, (*layerRef).finalize)
	return r
}

// finalize is the safety net for a reference dropped without Release: it frees the C handle
// but deletes nothing (a deletion timed by the garbage collector would be a surprise, and its
// []Metadata would be lost). The handle becomes the layer's pin (or is closed when there is
// one), so the layer is as after a restart: kept, with one reference less.
func (r *layerRef) finalize() { _ = r.close() }

// close frees the C handle without releasing it (Store.CloseLayer and the finalizer): the
// layer is kept, as after a restart.
func (r *layerRef) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.h
	if h == nil {
		return &Error{Code: CodeNotRetained, Message: "layer not retained: " + string(r.info.chainID)}
	}
	r.h = nil
	runtime.SetFinalizer(r, nil)
	s := r.s
	if !s.gate.enter() {
		return nil // Close freed it
	}
	defer s.gate.exit()
	s.refMu.Lock()
	s.adoptLocked(r.info, h)
	s.refMu.Unlock()
	s.untrack(h)
	return nil
}

// use runs f with the handle, which stays valid (not released, store not closed) meanwhile.
func (r *layerRef) use(f func(h *C.rolayer_layer) error) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.h == nil {
		return &Error{Code: CodeNotRetained, Message: "layer not retained: " + string(r.info.chainID)}
	}
	if !r.s.gate.enter() {
		return errClosed("store")
	}
	defer r.s.gate.exit()
	err := f(r.h)
	runtime.KeepAlive(r)
	return err
}

func (r *layerRef) release() ([]Metadata, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.h
	if h == nil {
		return nil, &Error{Code: CodeNotRetained, Message: "layer not retained: " + string(r.info.chainID)}
	}
	r.h = nil
	runtime.SetFinalizer(r, nil)
	s := r.s
	if !s.gate.enter() {
		return nil, errClosed("store") // Close freed the handle
	}
	defer s.gate.exit()
	s.refMu.Lock()
	s.dropChainPinsLocked(r.info.chainID, r.info.parent)
	var removed *C.rolayer_removed
	var cerr *C.rolayer_error
	rc := C.rolayer_release_ext(&removed, h, &cerr)
	s.refMu.Unlock()
	s.untrack(h)
	runtime.KeepAlive(r)
	if rc != 0 {
		return nil, fromC(rc, cerr)
	}
	return s.removedList(removed), nil
}

func (r *layerRef) TarStream() (io.ReadCloser, error) {
	var st *tarStream
	err := r.use(func(h *C.rolayer_layer) error {
		var out *C.rolayer_tar_stream
		var cerr *C.rolayer_error
		if rc := C.rolayer_tar_stream_open(&out, h, &cerr); rc != 0 {
			return verifyErr(fromC(rc, cerr), r.info.diffID)
		}
		st = r.s.newStream(out, r.info.chainID, r.info.diffID)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (r *layerRef) TarStreamFrom(parent ChainID) (io.ReadCloser, error) {
	var st *tarStream
	err := r.use(func(h *C.rolayer_layer) error {
		var err error
		st, err = r.s.openFrom(h, r.info.chainID, parent)
		return err
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (r *layerRef) Metadata() (map[string]string, error) {
	var m map[string]string
	err := r.use(func(h *C.rolayer_layer) error {
		var err error
		m, err = metadataOf(h)
		return err
	})
	return m, err
}

func (r *layerRef) Verify() error {
	return r.use(func(h *C.rolayer_layer) error {
		var cerr *C.rolayer_error
		if rc := C.rolayer_layer_verify(h, &cerr); rc != 0 {
			return verifyErr(fromC(rc, cerr), r.info.diffID)
		}
		return nil
	})
}

// layerView describes a layer without holding a reference (see pins.go).
type layerView struct {
	layerBase
}

// use runs f with a handle on the layer, a look (f must be short; see pins.go).
func (v *layerView) use(f func(h *C.rolayer_layer) error) error {
	return v.s.look(v.info.chainID, f)
}

// stream opens a stream of the layer through its pin, which the stream holds until it closes.
func (v *layerView) stream(open func(h *C.rolayer_layer) (*tarStream, error)) (io.ReadCloser, error) {
	s := v.s
	if !s.gate.enter() {
		return nil, errClosed("store")
	}
	defer s.gate.exit()
	s.refMu.Lock()
	defer s.refMu.Unlock()
	p, err := s.pinLocked(v.info.chainID)
	if err != nil {
		return nil, err
	}
	st, err := open(p.h)
	if err != nil {
		s.unpinLocked(p)
		return nil, err
	}
	p.streams++
	st.pin = p
	return st, nil
}

func (v *layerView) TarStream() (io.ReadCloser, error) {
	return v.stream(func(h *C.rolayer_layer) (*tarStream, error) {
		var out *C.rolayer_tar_stream
		var cerr *C.rolayer_error
		if rc := C.rolayer_tar_stream_open(&out, h, &cerr); rc != 0 {
			return nil, verifyErr(fromC(rc, cerr), v.info.diffID)
		}
		return v.s.newStream(out, v.info.chainID, v.info.diffID), nil
	})
}

func (v *layerView) TarStreamFrom(parent ChainID) (io.ReadCloser, error) {
	return v.stream(func(h *C.rolayer_layer) (*tarStream, error) {
		return v.s.openFrom(h, v.info.chainID, parent)
	})
}

func (v *layerView) Metadata() (map[string]string, error) {
	var m map[string]string
	err := v.use(func(h *C.rolayer_layer) error {
		var err error
		m, err = metadataOf(h)
		return err
	})
	return m, err
}

// Verify reads the stream outside the store's locks.
func (v *layerView) Verify() error {
	rc, err := v.TarStream()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

func (s *Store) openFrom(h *C.rolayer_layer, layer, parent ChainID) (*tarStream, error) {
	var cparent *C.char
	if parent != "" {
		cparent = C.CString(string(parent))
		defer C.free(unsafe.Pointer(cparent))
	}
	var out *C.rolayer_tar_stream
	var cerr *C.rolayer_error
	if rc := C.rolayer_tar_stream_open_from(&out, h, cparent, &cerr); rc != 0 {
		return nil, fromC(rc, cerr)
	}
	return s.newStream(out, layer, ""), nil
}

func metadataOf(h *C.rolayer_layer) (map[string]string, error) {
	var l *C.rolayer_string_list
	var cerr *C.rolayer_error
	if rc := C.rolayer_layer_metadata(&l, h, &cerr); rc != 0 {
		return nil, fromC(rc, cerr)
	}
	defer C.rolayer_string_list_free(l)
	n := int(C.rolayer_string_list_count(l))
	m := make(map[string]string, n/2)
	for i := 0; i+1 < n; i += 2 {
		m[C.GoString(C.rolayer_string_list_get(l, C.size_t(i)))] = C.GoString(C.rolayer_string_list_get(l, C.size_t(i+1)))
	}
	return m, nil
}
