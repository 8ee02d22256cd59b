// SPDX-License-Identifier: Apache-2.0

package rolayer

/*
#include <stdlib.h>
#include <stdint.h>
#include <rolayer.h>

// Defined in callback.go (//export).
extern int goRolayerRead(void *buf, size_t capacity, size_t *n_read, uintptr_t handle);

static int rl_read(void *buf, size_t cap, size_t *n_read, void *user_data) {
	return goRolayerRead(buf, cap, n_read, (uintptr_t)user_data);
}

// user_data carries a runtime/cgo.Handle (an integer): C never holds a Go pointer.
static int rl_register(rolayer_layer **out, rolayer_store *store, const char *parent, uintptr_t handle,
                       const char *media_type, const char *digest, int64_t size, rolayer_error **err) {
	rolayer_register_options o = ROLAYER_REGISTER_OPTIONS_INIT;
	o.descriptor_media_type = media_type;
	o.descriptor_digest = digest;
	o.descriptor_size = size;
	return rolayer_register_ext(out, store, parent, rl_read, (void *)handle, &o, err);
}
*/
import "C"

import (
	"io"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// RegisterWithDescriptor registers a layer from the uncompressed tar stream ts, read to its end,
// on top of parent ("" for a base layer), recording the distribution descriptor desc (the zero
// Descriptor for none). As the Docker engine does:
//   - DiffID = sha256 of every byte read from ts; ChainID per the OCI image spec;
//   - registering a ChainID that exists returns a new reference to the existing layer;
//   - ErrLayerDoesNotExist for an unknown parent, ErrMaxDepthExceeded when the parent is at
//     MaxDepth; ErrArchive for a malformed archive, ErrUnsafe when a path or link escapes.
//
// ts is read on the calling goroutine, in pieces of up to 1 MiB, during the call only. If ts
// returns an error, registration stops and the *Error (CodeCallback) returned wraps it:
// errors.Is(err, thatError) holds. If ts panics, the panic is recovered, registration stops and
// the error wraps a *ReaderPanicError (errors.As) with the panic value and stack; the panic is
// not re-raised. ts must not call runtime.Goexit (it runs inside a C call). A failure leaves
// nothing behind in the store.
func (s *Store) RegisterWithDescriptor(ts io.Reader, parent ChainID, desc Descriptor) (Layer, error) {
	if ts == nil {
		return nil, &Error{Code: CodeInvalid, Message: "rolayer: Register needs a reader"}
	}
	var cparent *C.char
	if parent != "" {
		cparent = C.CString(string(parent))
		defer C.free(unsafe.Pointer(cparent))
	}
	cd := newCDescriptor(desc)
	defer cd.free()
	if !s.gate.enter() {
		return nil, errClosed("store")
	}
	defer s.gate.exit()

	st := &readState{r: ts}
	h := cgo.NewHandle(st)
	defer h.Delete()
	var out *C.rolayer_layer
	var cerr *C.rolayer_error
	rc := C.rl_register(&out, s.c, cparent, C.uintptr_t(h), cd.media, cd.digest, cd.size, &cerr)
	runtime.KeepAlive(st)
	if rc != 0 {
		return nil, st.failure(rc, cerr)
	}
	return s.newRef(out), nil
}

// cDescriptor is a Descriptor as C strings for rolayer_register_options (NULL for what is unset).
type cDescriptor struct {
	media, digest *C.char
	size          C.int64_t
}

func newCDescriptor(desc Descriptor) cDescriptor {
	var cd cDescriptor
	if desc.MediaType != "" || desc.Digest != "" {
		if desc.MediaType != "" {
			cd.media = C.CString(desc.MediaType)
		}
		if desc.Digest != "" {
			cd.digest = C.CString(string(desc.Digest))
		}
		cd.size = C.int64_t(desc.Size)
	}
	return cd
}

func (cd cDescriptor) free() {
	C.free(unsafe.Pointer(cd.media))
	C.free(unsafe.Pointer(cd.digest))
}

// failure is the error of a call that read the layer stream through st and failed with rc: the
// library's, or the reader's own error or panic when that is what stopped it.
func (st *readState) failure(rc C.int, cerr *C.rolayer_error) *Error {
	e := fromC(rc, cerr)
	switch {
	case st.panicked != nil:
		e.Code = CodeCallback
		e.Message = st.panicked.Error()
		e.Err = st.panicked
	case st.err != nil && e.Code == CodeCallback:
		e.Message = "rolayer: reading the layer stream failed: " + st.err.Error()
		e.Err = st.err
	}
	return e
}
