// SPDX-License-Identifier: Apache-2.0

// Package mobylayer makes a librolayer store usable where the Docker engine expects its own
// read-only layer types: the layers it returns satisfy layer.Layer and layer.TarStreamer of
// github.com/docker/docker/layer (v28), with the engine's ChainID, DiffID, Metadata,
// distribution.Descriptor and error values. Store covers the read-only half of layer.Store
// (ReadOnlyStore; the engine's read-write layers are not a librolayer concern).
//
// It is its own Go module so that the engine's dependency tree stays out of the binding's
// module (github.com/librolayer/rolayer/bindings/go).
//
// References work as in the binding: Register and Get return references that Release gives
// back (deleting the layer when it was the last reference); a reference that is dropped is
// closed by the garbage collector and deletes nothing. Map and Parent return descriptions that
// hold no reference.
package mobylayer

import (
	"errors"
	"fmt"
	"io"

	"github.com/docker/distribution"
	"github.com/docker/docker/layer"
	rolayer "github.com/librolayer/rolayer/bindings/go"
)

// ReadOnlyStore is the read-only half of the engine's layer.Store (and its
// layer.DescribableStore), which Store implements.
type ReadOnlyStore interface {
	Register(io.Reader, layer.ChainID) (layer.Layer, error)
	RegisterWithDescriptor(io.Reader, layer.ChainID, distribution.Descriptor) (layer.Layer, error)
	Get(layer.ChainID) (layer.Layer, error)
	Map() map[layer.ChainID]layer.Layer
	Release(layer.Layer) ([]layer.Metadata, error)
	Cleanup() error
	DriverStatus() [][2]string
	DriverName() string
}

var (
	_ ReadOnlyStore          = (*Store)(nil)
	_ layer.DescribableStore = (*Store)(nil)
	_ layer.Layer            = (*Layer)(nil)
	_ layer.TarStreamer      = (*Layer)(nil)
)

// Store wraps a *rolayer.Store.
type Store struct {
	s *rolayer.Store
}

// New wraps s. Closing the Store (Cleanup) closes s.
func New(s *rolayer.Store) *Store { return &Store{s: s} }

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() *rolayer.Store { return s.s }

// Register is rolayer.Store.Register with the engine's types.
func (s *Store) Register(r io.Reader, parent layer.ChainID) (layer.Layer, error) {
	return s.wrap(s.s.Register(r, rolayer.ChainID(parent)))
}

// RegisterWithDescriptor is rolayer.Store.RegisterWithDescriptor with the engine's types (the
// descriptor's media type, digest and size are kept; its URLs, annotations and platform are
// not).
func (s *Store) RegisterWithDescriptor(r io.Reader, parent layer.ChainID, d distribution.Descriptor) (layer.Layer, error) {
	desc := rolayer.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
	return s.wrap(s.s.RegisterWithDescriptor(r, rolayer.ChainID(parent), desc))
}

// Get returns a new reference to the layer id.
func (s *Store) Get(id layer.ChainID) (layer.Layer, error) {
	return s.wrap(s.s.Get(rolayer.ChainID(id)))
}

// Map returns every layer, as descriptions that hold no reference (as the engine's Map does).
func (s *Store) Map() map[layer.ChainID]layer.Layer {
	m := s.s.Map()
	out := make(map[layer.ChainID]layer.Layer, len(m))
	for id, l := range m {
		out[layer.ChainID(id)] = &Layer{l: l, s: s}
	}
	return out
}

// Release gives back a reference from Register or Get; see rolayer.Store.Release. A layer that
// is not this Store's reference is layer.ErrLayerNotRetained.
func (s *Store) Release(l layer.Layer) ([]layer.Metadata, error) {
	ml, ok := l.(*Layer)
	if !ok || ml.s != s {
		return nil, fmt.Errorf("%w: not a reference of this store", layer.ErrLayerNotRetained)
	}
	removed, err := s.s.Release(ml.l)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]layer.Metadata, len(removed))
	for i, m := range removed {
		out[i] = layer.Metadata{ChainID: layer.ChainID(m.ChainID), DiffID: layer.DiffID(m.DiffID), Size: m.Size, DiffSize: m.DiffSize}
	}
	return out, nil
}

// Cleanup closes the store (deleting nothing).
func (s *Store) Cleanup() error { return s.s.Close() }

// DriverStatus is rolayer.Store.DriverStatus.
func (s *Store) DriverStatus() [][2]string { return s.s.DriverStatus() }

// DriverName is the store's driver ("dir", "exact" or a custom driver's name).
func (s *Store) DriverName() string { return s.s.DriverName() }

func (s *Store) wrap(l rolayer.Layer, err error) (layer.Layer, error) {
	if err != nil {
		return nil, mapErr(err)
	}
	return &Layer{l: l, s: s}, nil
}

// Layer is a rolayer layer as a layer.Layer (and a layer.TarStreamer).
type Layer struct {
	l rolayer.Layer
	s *Store
}

// Unwrap returns the binding's layer (for Verify, StreamSize, …).
func (l *Layer) Unwrap() rolayer.Layer { return l.l }

// TarStream is the registered tar stream, byte for byte, verified against the DiffID.
func (l *Layer) TarStream() (io.ReadCloser, error) {
	rc, err := l.l.TarStream()
	return rc, mapErr(err)
}

// TarStreamFrom is the driver's diff between this layer and its ancestor parent.
func (l *Layer) TarStreamFrom(parent layer.ChainID) (io.ReadCloser, error) {
	rc, err := l.l.TarStreamFrom(rolayer.ChainID(parent))
	return rc, mapErr(err)
}

func (l *Layer) ChainID() layer.ChainID { return layer.ChainID(l.l.ChainID()) }
func (l *Layer) DiffID() layer.DiffID   { return layer.DiffID(l.l.DiffID()) }
func (l *Layer) Size() int64            { return l.l.Size() }
func (l *Layer) DiffSize() int64        { return l.l.DiffSize() }

// Parent describes the parent layer (no reference), or is nil for a base layer.
func (l *Layer) Parent() layer.Layer {
	p := l.l.Parent()
	if p == nil {
		return nil // a nil interface, not a nil *Layer
	}
	return &Layer{l: p, s: l.s}
}

// Metadata is the driver's description of the layer.
func (l *Layer) Metadata() (map[string]string, error) {
	m, err := l.l.Metadata()
	return m, mapErr(err)
}

// Descriptor is the distribution descriptor given at registration (the zero Descriptor when
// none was), as the engine's layer.DescribableLayer.
func (l *Layer) Descriptor() distribution.Descriptor {
	d := l.l.Descriptor()
	if d.Digest == "" && d.MediaType == "" {
		return distribution.Descriptor{}
	}
	return distribution.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
}

// CacheID is the id under which the store's driver keeps the layer's files: what the engine's
// layer store calls the layer's cache-id (its layerdb `cache-id` file, the graphdriver's id).
// The engine's read-only layer.Layer interface has no method for it; callers that need it
// (for instance to map a layer to the driver's storage) type-assert to *Layer.
func (l *Layer) CacheID() string { return l.l.CacheID() }

func (l *Layer) String() string { return string(l.l.ChainID()) }

// mapErr keeps the binding's error and adds the engine's sentinel where there is one, so that
// errors.Is(err, layer.ErrLayerDoesNotExist) and errors.Is(err, rolayer.ErrLayerDoesNotExist)
// both hold.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rolayer.ErrLayerDoesNotExist):
		return &engineError{engine: layer.ErrLayerDoesNotExist, err: err}
	case errors.Is(err, rolayer.ErrLayerNotRetained):
		return &engineError{engine: layer.ErrLayerNotRetained, err: err}
	case errors.Is(err, rolayer.ErrMaxDepthExceeded):
		return &engineError{engine: layer.ErrMaxDepthExceeded, err: err}
	}
	return err
}

type engineError struct {
	engine error
	err    error
}

func (e *engineError) Error() string   { return e.err.Error() }
func (e *engineError) Unwrap() []error { return []error{e.engine, e.err} }
