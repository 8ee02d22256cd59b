package rolayer

/*
#include <stdlib.h>
#include <rolayer.h>
*/
import "C"

import (
	"unsafe"
)

// Pins: how Map and Parent describe layers without holding references.
//
// Describing a layer (its DiffID, sizes, …) or streaming it needs a C handle, and the C API
// has only one way to drop a handle, rolayer_release, which deletes the layer when that was its
// last reference. In a freshly opened store every layer without a persistent reference or a
// child is at zero references, so "open, read, release" would delete it: Map must not do that.
//
// So the store keeps at most one extra handle per ChainID, a pin, opened by Map, Parent or a
// description's TarStream/Metadata/Verify, and never released on its own while the store is
// open. A pin must not keep a layer alive that the Docker engine's semantics would delete, so
// every call that drops a reference (Release, Unretain) first drops the pins of the layer's
// whole chain: the layer itself and its ancestors. Dropping a pin there can never delete
// anything: the layer still has the reference being released (or a persistent one, checked
// for Unretain) and every ancestor still has a child. The release that follows then deletes,
// and cascades, exactly as it would have without pins. Close frees pins after the store, which
// deletes nothing.
//
// Every call that drops a C reference (the above, stream frees) and every change to the pins
// happens under refMu, so that the "still has another reference" argument holds while it is
// used. Ancestors whose parent is not known yet are looked at with a handle opened and released
// at once, which is safe for the same reason (they have a child).
//
// The finalizers use pins too: a reference or a stream dropped without Release/Close gives its C
// handle up without deleting anything (adoptLocked), as a restart would.
//
// Caveat: a stream keeps its layer alive (C semantics). If the last reference is released while
// a stream is open, the stream's Close deletes the layer, unless a Map or Parent pinned it again
// in between: then it stays until the next Release or Unretain in its chain, or the next Open.
//
// A C call that drops a handle without deleting (e.g. a rolayer_layer_close) would replace all
// of this with "open, read, close".

// layerInfo is what a layer is. It does not change for a ChainID (which hashes the DiffID and
// the parent), except the descriptor, which is the one given to the first Register.
type layerInfo struct {
	chainID    ChainID
	diffID     DiffID
	parent     ChainID
	depth      int
	size       int64
	diffSize   int64
	streamSize int64
	desc       Descriptor
}

func readInfo(h *C.rolayer_layer) *layerInfo {
	in := &layerInfo{
		chainID: ChainID(C.GoString(C.rolayer_layer_chain_id(h))),
		diffID:  DiffID(C.GoString(C.rolayer_layer_diff_id(h))),
		depth:   int(C.rolayer_layer_depth(h)),
	}
	if p := C.rolayer_layer_parent(h); p != nil {
		in.parent = ChainID(C.GoString(p))
	}
	var v C.int64_t
	if C.rolayer_layer_size(h, &v, nil) == 0 {
		in.size = int64(v)
	}
	if C.rolayer_layer_diff_size(h, &v, nil) == 0 {
		in.diffSize = int64(v)
	}
	if C.rolayer_layer_stream_size(h, &v, nil) == 0 {
		in.streamSize = int64(v)
	}
	if p := C.rolayer_layer_descriptor_media_type(h); p != nil {
		in.desc.MediaType = C.GoString(p)
	}
	if p := C.rolayer_layer_descriptor_digest(h); p != nil {
		in.desc.Digest = digestOf(C.GoString(p))
	}
	in.desc.Size = int64(C.rolayer_layer_descriptor_size(h))
	return in
}

func (s *Store) remember(in *layerInfo) {
	s.infoMu.Lock()
	s.info[in.chainID] = in
	s.infoMu.Unlock()
}

func (s *Store) known(id ChainID) (*layerInfo, bool) {
	s.infoMu.RLock()
	in, ok := s.info[id]
	s.infoMu.RUnlock()
	return in, ok && in != nil
}

// view describes layer id without holding a reference: from what is known, else through a pin.
func (s *Store) view(id ChainID) (*layerView, error) {
	if in, ok := s.known(id); ok {
		return &layerView{layerBase{s: s, info: in}}, nil
	}
	if !s.gate.enter() {
		return nil, errClosed("store")
	}
	defer s.gate.exit()
	s.refMu.Lock()
	defer s.refMu.Unlock()
	p, err := s.pinLocked(id)
	if err != nil {
		return nil, err
	}
	return &layerView{layerBase{s: s, info: p.info}}, nil
}

// pin is the store's extra handle on a described layer, with what the layer is.
type pin struct {
	h    *C.rolayer_layer
	info *layerInfo
}

// pinLocked returns the pin of id, opening it if needed. refMu and the gate are held.
func (s *Store) pinLocked(id ChainID) (*pin, error) {
	if p := s.pins[id]; p != nil {
		return p, nil
	}
	cid := C.CString(string(id))
	defer C.free(unsafe.Pointer(cid))
	var h *C.rolayer_layer
	var cerr *C.rolayer_error
	if rc := C.rolayer_open(&h, s.c, cid, &cerr); rc != 0 {
		return nil, fromC(rc, cerr)
	}
	p := &pin{h: h, info: readInfo(h)}
	s.remember(p.info)
	s.pins[id] = p
	return p, nil
}

// parentLocked returns the parent of id (a layer known to have a reference besides any pin).
// The info cache is a hint only (a deletion may evict it at any time); the pins are not.
func (s *Store) parentLocked(id ChainID) (ChainID, bool) {
	if p := s.pins[id]; p != nil {
		return p.info.parent, true
	}
	if in, ok := s.known(id); ok {
		return in.parent, true
	}
	if in, ok := s.peekLocked(id); ok {
		return in.parent, true
	}
	return "", false
}

// peekLocked reads layer id through a handle released at once: only for a layer that has
// another reference (a child, a persistent reference, or one held by the caller).
func (s *Store) peekLocked(id ChainID) (*layerInfo, bool) {
	cid := C.CString(string(id))
	defer C.free(unsafe.Pointer(cid))
	var h *C.rolayer_layer
	if C.rolayer_open(&h, s.c, cid, nil) != 0 {
		return nil, false
	}
	in := readInfo(h)
	s.remember(in)
	C.rolayer_release(h, nil)
	return in, true
}

// dropChainPinsLocked drops the pins of id and of its ancestors (parent is id's parent). The
// caller holds a reference on id that it is about to drop, and refMu.
func (s *Store) dropChainPinsLocked(id, parent ChainID) {
	if len(s.pins) == 0 {
		return
	}
	s.dropPinLocked(id)
	for cur := parent; cur != "" && len(s.pins) > 0; {
		s.dropPinLocked(cur)
		next, ok := s.parentLocked(cur)
		if !ok {
			return
		}
		cur = next
	}
}

func (s *Store) dropPinLocked(id ChainID) {
	if p := s.pins[id]; p != nil {
		delete(s.pins, id)
		C.rolayer_release(p.h, nil)
	}
}

// adoptLocked takes over handle h of the layer in, without deleting anything: h becomes the
// layer's pin, or is released when the layer has a pin already (which keeps it).
func (s *Store) adoptLocked(in *layerInfo, h *C.rolayer_layer) {
	if s.pins[in.chainID] == nil {
		s.pins[in.chainID] = &pin{h: h, info: in}
		return
	}
	C.rolayer_release(h, nil)
}
