// SPDX-License-Identifier: Apache-2.0

package rolayer

/*
#include <stdlib.h>
#include <rolayer.h>
*/
import "C"

import (
	"unsafe"
)

// Descriptions and pins.
//
// Map and Parent describe layers without holding references. A description reads what it
// needs (what the layer is, its metadata) through a handle opened and closed at once, a look:
// rolayer_layer_close drops a handle without deleting anything, even in a freshly opened store
// where every layer without a child or a persistent reference is at zero references.
//
// A look must not overlap a call that drops a reference (Release, Unretain, a stream's Close):
// a release that cascades up a chain stops at a layer that still has a handle, and when that
// handle goes by rolayer_layer_close the cascade does not resume (the C store deletes on a
// handle's drop only a layer on which a release was asked for), so the layer would stay. Looks
// therefore hold refMu for reading; every call that drops a C reference, and every change to
// the pins, holds it for writing.
//
// A description's stream, which lives as long as its reader wants, gets the same guarantee from
// a pin: a handle the store keeps on the layer while the description's streams are open. Every
// call that drops a reference (Release, Unretain) first releases (rolayer_release) the pins of
// the layer's whole chain: the layer itself and its ancestors. That deletes nothing (the layer
// still has the reference being released, or a persistent one, checked for Unretain, and every
// ancestor has a child), but it asks for a release of each pinned layer, so when the release
// that follows cascades up to a layer that a description's stream still holds, that stream's
// Close completes the deletion, as it does for a reference's stream. The release otherwise
// deletes, and cascades, exactly as it would have without pins. When a pinned layer's last
// description stream closes with no release in its chain meanwhile, its pin is closed, which
// deletes nothing.
//
// The finalizers leave pins too. They are a safety net that deletes nothing: a reference dropped
// without Release hands its C handle to the store as the layer's pin (closing it could complete
// a release asked for through another reference of the same layer), and a stream dropped
// without Close has its layer pinned before it is freed (freeing it could complete a release
// asked for while it was open). Those pins stay until a release in the layer's chain, or Close.
// Close frees pins after the store, which deletes nothing.
//
// Without description streams or finalizers at work there are no pins, and Release and Unretain
// skip all of this.

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
	cacheID    string
}

func readInfo(h *C.rolayer_layer) *layerInfo {
	in := &layerInfo{
		chainID: ChainID(C.GoString(C.rolayer_layer_chain_id(h))),
		diffID:  DiffID(C.GoString(C.rolayer_layer_diff_id(h))),
		depth:   int(C.rolayer_layer_depth(h)),
		cacheID: C.GoString(C.rolayer_layer_cache_id(h)),
	}
	if p := C.rolayer_layer_parent(h); p != nil {
		in.parent = ChainID(C.GoString(p))
	}
	var v C.int64_t
	if C.rolayer_layer_size(&v, h, nil) == 0 {
		in.size = int64(v)
	}
	if C.rolayer_layer_diff_size(&v, h, nil) == 0 {
		in.diffSize = int64(v)
	}
	if C.rolayer_layer_stream_size(&v, h, nil) == 0 {
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

// view describes layer id without holding a reference: from what is known, else through a look.
func (s *Store) view(id ChainID) (*layerView, error) {
	if in, ok := s.known(id); ok {
		return &layerView{layerBase{s: s, info: in}}, nil
	}
	var in *layerInfo
	err := s.look(id, func(h *C.rolayer_layer) error {
		in = readInfo(h)
		s.remember(in)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &layerView{layerBase{s: s, info: in}}, nil
}

// look runs f with a handle on layer id, opened and closed around it (see above).
func (s *Store) look(id ChainID, f func(h *C.rolayer_layer) error) error {
	cid := C.CString(string(id))
	defer C.free(unsafe.Pointer(cid))
	if !s.gate.enter() {
		return errClosed("store")
	}
	defer s.gate.exit()
	s.refMu.RLock()
	defer s.refMu.RUnlock()
	var h *C.rolayer_layer
	var cerr *C.rolayer_error
	if rc := C.rolayer_open(&h, s.c, cid, &cerr); rc != 0 {
		return fromC(rc, cerr)
	}
	defer C.rolayer_layer_close(h)
	return f(h)
}

// pin is a handle the store keeps on a layer (see above), with what the layer is.
type pin struct {
	h       *C.rolayer_layer
	info    *layerInfo
	streams int  // description streams open through it
	kept    bool // left by a finalizer: kept until a release in its chain, or Close
}

// pinLocked returns the pin of id, opening it if needed. refMu (for writing) and the gate are
// held.
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

// unpinLocked closes p when nothing needs it any more: no description stream, not a
// finalizer's, and still the layer's pin (a release in its chain drops pins on its own).
func (s *Store) unpinLocked(p *pin) {
	if p.streams > 0 || p.kept || s.pins[p.info.chainID] != p {
		return
	}
	delete(s.pins, p.info.chainID)
	C.rolayer_layer_close(p.h)
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

// peekLocked reads layer id through a handle closed at once. refMu is held.
func (s *Store) peekLocked(id ChainID) (*layerInfo, bool) {
	cid := C.CString(string(id))
	defer C.free(unsafe.Pointer(cid))
	var h *C.rolayer_layer
	if C.rolayer_open(&h, s.c, cid, nil) != 0 {
		return nil, false
	}
	in := readInfo(h)
	s.remember(in)
	C.rolayer_layer_close(h)
	return in, true
}

// dropChainPinsLocked releases the pins of id and of its ancestors (parent is id's parent). The
// caller holds a reference on id that it is about to drop, and refMu for writing.
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
		C.rolayer_release(p.h, nil) // deletes nothing, asks for the release (see above)
	}
}

// adoptLocked takes over handle h of the layer in, without deleting anything: h becomes the
// layer's kept pin, or is closed when the layer has a pin already, which is kept from then on.
func (s *Store) adoptLocked(in *layerInfo, h *C.rolayer_layer) {
	if p := s.pins[in.chainID]; p != nil {
		p.kept = true
		C.rolayer_layer_close(h)
		return
	}
	s.pins[in.chainID] = &pin{h: h, info: in, kept: true}
}
