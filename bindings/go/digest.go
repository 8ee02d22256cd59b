// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"github.com/opencontainers/go-digest"
)

// ChainID is the content-addressable ID of a layer and its whole chain of parents, as in the
// Docker engine's layer package (and the OCI image spec): a base layer's ChainID is its DiffID,
// a child's is sha256(parentChainID + " " + diffID).
type ChainID digest.Digest

// String returns the "sha256:<hex>" form.
func (id ChainID) String() string { return string(id) }

// Digest returns the ChainID as a go-digest Digest.
func (id ChainID) Digest() digest.Digest { return digest.Digest(id) }

// DiffID is the sha256 digest of a layer's uncompressed tar stream, every byte up to end of input.
type DiffID digest.Digest

// String returns the "sha256:<hex>" form.
func (d DiffID) String() string { return string(d) }

// Digest returns the DiffID as a go-digest Digest.
func (d DiffID) Digest() digest.Digest { return digest.Digest(d) }

// CreateChainID returns the ChainID of a chain of layers given their DiffIDs, base first
// (the same function as the Docker engine's layer.CreateChainID). It returns "" for no layers.
func CreateChainID(dgsts []DiffID) ChainID {
	if len(dgsts) == 0 {
		return ""
	}
	parent := ChainID(dgsts[0])
	for _, d := range dgsts[1:] {
		parent = ChainID(digest.FromString(string(parent) + " " + string(d)))
	}
	return parent
}

// Descriptor is the distribution descriptor of the blob a layer was pulled from (what the
// Docker engine keeps as distribution.Descriptor for a DescribableLayer). The zero value means
// none; Size is -1 when none was given.
type Descriptor struct {
	MediaType string
	Digest    digest.Digest
	Size      int64
}

// Metadata describes a layer deleted by Release or Unretain, as in the Docker engine's
// layer.Metadata: Size is DiffSize summed over the layer's chain.
type Metadata struct {
	ChainID  ChainID
	DiffID   DiffID
	Size     int64
	DiffSize int64
}
