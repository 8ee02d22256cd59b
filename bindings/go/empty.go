// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"bytes"
	"io"
	"strconv"
)

// DigestSHA256EmptyTar is the DiffID of the empty layer: a tar archive with no entries, that is
// its two end-of-archive blocks (1024 zero bytes). A base layer's ChainID is its DiffID, so it
// is also the empty base layer's ChainID. The same value as the Docker engine's
// layer.DigestSHA256EmptyTar.
const DigestSHA256EmptyTar = DiffID("sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")

// EmptyLayer is the empty layer, as the Docker engine's layer.EmptyLayer: not in any store, its
// TarStream is the 1024 zero bytes of DigestSHA256EmptyTar, its sizes are 0 and it has no
// parent. It holds no reference: Release returns ErrLayerNotRetained for it, and nothing needs
// to be given back.
var EmptyLayer Layer = emptyLayer{}

// IsEmpty reports whether diffID is the empty layer's DiffID, as layer.IsEmpty does.
func IsEmpty(diffID DiffID) bool { return diffID == DigestSHA256EmptyTar }

type emptyLayer struct{}

func (emptyLayer) TarStream() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(make([]byte, 1024))), nil
}

func (e emptyLayer) TarStreamFrom(parent ChainID) (io.ReadCloser, error) {
	if parent == "" {
		return e.TarStream()
	}
	return nil, &Error{Code: CodeNotAncestor, Message: "rolayer: the empty layer has no parent: " + string(parent)}
}

func (emptyLayer) ChainID() ChainID                     { return ChainID(DigestSHA256EmptyTar) }
func (emptyLayer) DiffID() DiffID                       { return DigestSHA256EmptyTar }
func (emptyLayer) Parent() Layer                        { return nil }
func (emptyLayer) Size() int64                          { return 0 }
func (emptyLayer) DiffSize() int64                      { return 0 }
func (emptyLayer) Metadata() (map[string]string, error) { return map[string]string{}, nil }
func (emptyLayer) Descriptor() Descriptor               { return Descriptor{Size: -1} }
func (emptyLayer) Verify() error                        { return nil }
func (emptyLayer) CacheID() string                      { return "" }
func (emptyLayer) String() string                       { return string(DigestSHA256EmptyTar) }

// DriverStatus describes the store as the Docker engine's layer.Store.DriverStatus does (what
// `docker info` shows under the storage driver): the store's root, its driver and how many
// layers it holds. On a closed store the layer count is left out.
func (s *Store) DriverStatus() [][2]string {
	st := [][2]string{
		{"Root Dir", s.root},
		{"Driver", s.driver},
		{"Library", "librolayer " + Version()},
	}
	if ids, err := s.list(); err == nil {
		st = append(st, [2]string{"Layers", strconv.Itoa(len(ids))})
	}
	return st
}
