// SPDX-License-Identifier: Apache-2.0

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
// Dropping is not deleting. A reference dropped without Release is closed by its finalizer
// when the garbage collector finds it, which deletes nothing (the layer stays, as after a
// restart, until a Get+Release or Unretain deletes it); Store.CloseLayer does the same at once,
// for readers that look at layers without owning them. Only Release and Unretain delete. The
// C API (rolayer_layer_close vs rolayer_release) and the Rust binding (drop vs release()) agree.
// Close streams explicitly.
//
// # Contexts
//
// RegisterContext and RegisterWithDescriptorContext check a context.Context before every read of
// the layer stream, inside the library's read callback, and abort the registration through the
// callback (leaving nothing behind) once it is done; TarStreamContext, ExportContext and
// VerifyContext check it between reads of the verified stream. The errors wrap ctx.Err().
//
// # The Docker engine's read-only API
//
// DigestSHA256EmptyTar, EmptyLayer and IsEmpty are the engine's empty layer; Store.DriverStatus
// and Store.DriverName its driver description. The adapter module
// github.com/librolayer/rolayer/bindings/go/mobylayer makes a Store and its layers satisfy the
// engine's own layer.Layer and TarStreamer interfaces (the engine is a dependency of that module
// only).
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
// installed library or a build tree. It cannot be built without cgo: with CGO_ENABLED=0 the
// build stops on one error naming what is needed (nocgo.go).
package rolayer
