// SPDX-License-Identifier: Apache-2.0

//go:build cgo

// Package docker reads a Docker engine's graphdriver layers offline, without a daemon (the C
// API of include/rolayer/docker.h): it opens a data root (/var/lib/docker) with the overlay2 or
// vfs driver, lists the layer database, resolves an image name, image ID or ChainID to its chain
// of layers, and opens a layer's tar stream, reassembled from the engine's tar-split record and
// the driver's files and verified while it is read (every file against the record, the whole
// stream against the DiffID), exactly as `docker save` would produce it.
//
// Nothing under the data root is ever written, and reading is safe while dockerd runs. A Root is
// safe for concurrent use by many goroutines; a stream is an io.ReadCloser used by one goroutine
// at a time (it may move between goroutines) and stays valid after the Root is closed.
//
// Errors are *rolayer.Error values as in package rolayer (compare with errors.Is against
// rolayer.ErrLayerDoesNotExist, rolayer.ErrUnsupported, …); a layer whose data does not match
// (a stream read, Verify) fails with a *rolayer.VerificationError.
package docker

/*
#cgo pkg-config: rolayer
#include <stdlib.h>
#include <rolayer.h>
*/
import "C"

import (
	"io"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	rolayer "github.com/librolayer/rolayer/bindings/go"
	"github.com/opencontainers/go-digest"
)

// Layer is one layer of the engine's layer database.
type Layer struct {
	ChainID rolayer.ChainID
	DiffID  rolayer.DiffID
	Parent  rolayer.ChainID // "" for a base layer
	// CacheID is the driver's id of the layer (its directory under <root>/vfs/dir or
	// <root>/overlay2).
	CacheID string
	// Size is the size of the layer's files the engine recorded, -1 when absent.
	Size int64
	// Descriptor is the distribution descriptor from descriptor.json (dockerd 20.10 writes one
	// for foreign layers only); Size is -1 and the rest empty when there is none.
	Descriptor rolayer.Descriptor
	// Damaged says why the layer's metadata could not be read ("" when it was); the other
	// fields but ChainID are then empty.
	Damaged string
}

// Root is an open Docker data root.
type Root struct {
	mu sync.RWMutex // Close takes it for writing, every call for reading
	c  *C.rolayer_docker_root
}

// Open opens the Docker data root dataRoot (the directory itself may be reached through
// symlinks, nothing below it is) with driver "overlay2" or "vfs", or "" for the one driver that
// has a layer database. Errors: rolayer.ErrLayerDoesNotExist (CodeNotFound: no such directory
// or no layer database), rolayer.ErrUnsupported (another driver: btrfs, zfs, …),
// rolayer.ErrInvalid (several drivers and driver ""), rolayer.ErrIO.
func Open(dataRoot, driver string) (*Root, error) {
	croot := C.CString(dataRoot)
	defer C.free(unsafe.Pointer(croot))
	var cdrv *C.char
	if driver != "" {
		cdrv = C.CString(driver)
		defer C.free(unsafe.Pointer(cdrv))
	}
	var h *C.rolayer_docker_root
	var cerr *C.rolayer_error
	if rc := C.rolayer_docker_root_open(&h, croot, cdrv, &cerr); rc != 0 {
		return nil, fromC(rc, cerr)
	}
	r := &Root{c: h}
	runtime.SetFinalizer(r, (*Root).Close)
	return r, nil
}

// Close frees the root; streams already open stay valid. Later calls fail with an error whose
// cause is rolayer.ErrClosed. Close is idempotent.
func (r *Root) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c != nil {
		C.rolayer_docker_root_free(r.c)
		r.c = nil
		runtime.SetFinalizer(r, nil)
	}
	return nil
}

func (r *Root) enter() (*C.rolayer_docker_root, error) {
	r.mu.RLock()
	if r.c == nil {
		r.mu.RUnlock()
		return nil, &rolayer.Error{Code: rolayer.CodeInvalid, Message: "rolayer: the docker root is closed", Err: rolayer.ErrClosed}
	}
	return r.c, nil
}

// Driver is the driver in use: "overlay2" or "vfs" ("" after Close).
func (r *Root) Driver() string {
	h, err := r.enter()
	if err != nil {
		return ""
	}
	defer r.mu.RUnlock()
	return C.GoString(C.rolayer_docker_root_driver(h))
}

// Layers lists every layer of the layer database, parents before children (then by ChainID);
// layers whose metadata cannot be read come last, with Damaged set.
func (r *Root) Layers() ([]Layer, error) {
	h, err := r.enter()
	if err != nil {
		return nil, err
	}
	defer r.mu.RUnlock()
	var l *C.rolayer_docker_layers
	var cerr *C.rolayer_error
	if rc := C.rolayer_docker_layers_list(&l, h, &cerr); rc != 0 {
		return nil, fromC(rc, cerr)
	}
	return takeLayers(l), nil
}

// Layer describes one layer, by ChainID ("sha256:<hex>" or the hex). Errors:
// rolayer.ErrLayerDoesNotExist, rolayer.ErrCorrupt (damaged metadata), rolayer.ErrInvalid.
func (r *Root) Layer(chainID string) (Layer, error) {
	h, err := r.enter()
	if err != nil {
		return Layer{}, err
	}
	defer r.mu.RUnlock()
	cid := C.CString(chainID)
	defer C.free(unsafe.Pointer(cid))
	var l *C.rolayer_docker_layers
	var cerr *C.rolayer_error
	if rc := C.rolayer_docker_layers_get(&l, h, cid, &cerr); rc != 0 {
		return Layer{}, fromC(rc, cerr)
	}
	ls := takeLayers(l)
	if len(ls) != 1 {
		return Layer{}, &rolayer.Error{Code: rolayer.CodeIO, Message: "rolayer: the library returned no layer"}
	}
	return ls[0], nil
}

func str(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

func takeLayers(l *C.rolayer_docker_layers) []Layer {
	defer C.rolayer_docker_layers_free(l)
	n := int(C.rolayer_docker_layers_count(l))
	out := make([]Layer, n)
	for i := range out {
		ci := C.size_t(i)
		out[i] = Layer{
			ChainID: rolayer.ChainID(str(C.rolayer_docker_layers_chain_id(l, ci))),
			DiffID:  rolayer.DiffID(str(C.rolayer_docker_layers_diff_id(l, ci))),
			Parent:  rolayer.ChainID(str(C.rolayer_docker_layers_parent(l, ci))),
			CacheID: str(C.rolayer_docker_layers_cache_id(l, ci)),
			Size:    int64(C.rolayer_docker_layers_size(l, ci)),
			Descriptor: rolayer.Descriptor{
				MediaType: str(C.rolayer_docker_layers_descriptor_media_type(l, ci)),
				Digest:    digest.Digest(str(C.rolayer_docker_layers_descriptor_digest(l, ci))),
				Size:      int64(C.rolayer_docker_layers_descriptor_size(l, ci)),
			},
			Damaged: str(C.rolayer_docker_layers_error(l, ci)),
		}
	}
	return out
}

// Resolve gives the chain of ChainIDs, base first, that ref names: a layer's ChainID (full,
// hex, or a unique hex prefix), an image ID (same forms), or an image name from
// repositories.json ("name:tag", "name", "name@sha256:…", with or without
// "docker.io/library/"). Errors: rolayer.ErrLayerDoesNotExist when nothing matches,
// rolayer.ErrInvalid for an ambiguous prefix.
func (r *Root) Resolve(ref string) ([]rolayer.ChainID, error) {
	h, err := r.enter()
	if err != nil {
		return nil, err
	}
	defer r.mu.RUnlock()
	cref := C.CString(ref)
	defer C.free(unsafe.Pointer(cref))
	var l *C.rolayer_string_list
	var cerr *C.rolayer_error
	if rc := C.rolayer_docker_resolve(&l, h, cref, &cerr); rc != 0 {
		return nil, fromC(rc, cerr)
	}
	defer C.rolayer_string_list_free(l)
	out := make([]rolayer.ChainID, int(C.rolayer_string_list_count(l)))
	for i := range out {
		out[i] = rolayer.ChainID(str(C.rolayer_string_list_get(l, C.size_t(i))))
	}
	return out, nil
}

// TarStream opens the layer's tar stream, reassembled and verified as it is read. A Read fails
// with a *rolayer.VerificationError: CodeCorrupt with Path when a file is missing or differs
// (no byte of a bad file up to 1 MiB is returned) or the record is damaged, CodeDigest at the
// end when the stream does not match the DiffID. Opening fails with rolayer.ErrCorrupt when the
// layer's `diff` or `parent` was changed, rolayer.ErrLayerDoesNotExist for an unknown layer.
// The caller must Close the stream.
func (r *Root) TarStream(chainID string) (io.ReadCloser, error) {
	h, err := r.enter()
	if err != nil {
		return nil, err
	}
	defer r.mu.RUnlock()
	cid := C.CString(chainID)
	defer C.free(unsafe.Pointer(cid))
	var s *C.rolayer_tar_stream
	var cerr *C.rolayer_error
	if rc := C.rolayer_docker_stream_open(&s, h, cid, &cerr); rc != 0 {
		return nil, verifyErr(fromC(rc, cerr))
	}
	st := &stream{h: s}
	runtime.SetFinalizer(st, (*stream).Close)
	return st, nil
}

// Verify reads the layer's whole verified stream and discards it: nil when it is intact (and
// the stream's length), else the first damage, as TarStream's reads report it.
func (r *Root) Verify(chainID string) (int64, error) {
	h, err := r.enter()
	if err != nil {
		return 0, err
	}
	defer r.mu.RUnlock()
	cid := C.CString(chainID)
	defer C.free(unsafe.Pointer(cid))
	var n C.int64_t
	var cerr *C.rolayer_error
	if rc := C.rolayer_docker_verify(&n, h, cid, &cerr); rc != 0 {
		return 0, verifyErr(fromC(rc, cerr))
	}
	return int64(n), nil
}

// stream is a C tar stream as an io.ReadCloser.
type stream struct {
	mu  sync.Mutex
	h   *C.rolayer_tar_stream // nil once closed
	err error                 // sticky: io.EOF or the stream's error
}

func (s *stream) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		return 0, &rolayer.Error{Code: rolayer.CodeInvalid, Message: "rolayer: the stream is closed", Err: rolayer.ErrClosed}
	}
	if s.err != nil {
		return 0, s.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	var n C.size_t
	var cerr *C.rolayer_error
	// p is Go memory without Go pointers, passed for the duration of the call only.
	rc := C.rolayer_tar_stream_read(s.h, unsafe.Pointer(&p[0]), C.size_t(len(p)), &n, &cerr)
	if rc != 0 {
		s.err = verifyErr(fromC(rc, cerr))
		return 0, s.err
	}
	if n == 0 {
		s.err = io.EOF
		return 0, io.EOF
	}
	return int(n), nil
}

// Close frees the stream; it is idempotent.
func (s *stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h != nil {
		C.rolayer_tar_stream_free(s.h)
		s.h = nil
		runtime.SetFinalizer(s, nil)
	}
	return nil
}

// fromC converts and frees a C error, as package rolayer does.
func fromC(rc C.int, cerr *C.rolayer_error) *rolayer.Error {
	e := &rolayer.Error{Code: rolayer.Code(rc)}
	if cerr != nil {
		if c := rolayer.Code(C.rolayer_error_code(cerr)); c != rolayer.CodeOK {
			e.Code = c
		}
		e.Message = C.GoString(C.rolayer_error_message(cerr))
		e.Errno = syscall.Errno(C.rolayer_error_errno(cerr))
		e.UserCode = int(C.rolayer_error_user_code(cerr))
		if p := C.rolayer_error_diff_id(cerr); p != nil {
			e.DiffID = rolayer.DiffID(C.GoString(p))
		}
		if p := C.rolayer_error_path(cerr); p != nil {
			e.Path = C.GoString(p)
		}
		C.rolayer_error_free(cerr)
	}
	if e.Message == "" {
		e.Message = e.Code.Text()
	}
	return e
}

// verifyErr wraps a verification failure (CodeDigest, CodeCorrupt) in a
// *rolayer.VerificationError, as package rolayer's streams do.
func verifyErr(e *rolayer.Error) error {
	if e.Code != rolayer.CodeDigest && e.Code != rolayer.CodeCorrupt {
		return e
	}
	return &rolayer.VerificationError{DiffID: e.DiffID, Path: e.Path, Err: e}
}
