// Package rolayer is the Go binding of librolayer, a read-only container-image layer store with
// verified, byte-exact tar streams, behind a stable C ABI.
//
// Its API is shaped like the Docker engine's layer package (github.com/moby/moby/layer) so that
// an engine can use it in place of that package's read-only half: ChainID and DiffID are
// go-digest digests, Store has Register, RegisterWithDescriptor, Get, Release, Map and Cleanup,
// and Layer has TarStream, TarStreamFrom, ChainID, DiffID, Parent, Size, DiffSize, Metadata and
// Descriptor. On top of that: persistent references (Store.Retain, Unretain, Retained) and
// Layer.Verify.
//
// # References
//
// Register and Get return references, given back with Store.Release; the last reference of a
// layer (references, children, persistent references) deletes it and releases its parent in
// turn. Map and Layer.Parent return descriptions that hold no reference and never need Release,
// as the Docker engine's do.
//
// Finalizers are only a safety net: a reference or stream dropped without Release or Close has
// its C handle freed by the garbage collector, but that deletes nothing (the layer stays, as
// after a restart, until a Get+Release or Unretain deletes it). Release and Close explicitly.
//
// # Concurrency
//
// A Store and its Layers are safe for concurrent use by many goroutines. A stream (from
// TarStream) may be used from any goroutine; concurrent calls on one stream are serialised.
//
// # Drivers written in Go
//
// Options.CustomDriver takes a Driver implemented in Go instead of a built-in driver. The store
// calls it through the C ABI (runtime/cgo.Handle as the user data, C shims calling exported Go
// functions); errors and recovered panics of its methods fail the operation with ErrCallback,
// and a driver that declares exact diffs but returns other bytes is caught with
// ErrDigestMismatch. See Driver.
//
// # Errors
//
// Library errors are *Error values carrying the C status Code, message, and the DiffID and entry
// path of verification failures; use errors.Is with the sentinels (ErrLayerDoesNotExist,
// ErrLayerNotRetained, ErrMaxDepthExceeded, ErrDigestMismatch, …) and errors.As with *Error or
// *VerificationError.
//
// # Building
//
// The package uses cgo with "#cgo pkg-config: rolayer": see README.md for building against an
// installed library or a build tree.
package rolayer
