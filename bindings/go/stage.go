// SPDX-License-Identifier: Apache-2.0

package rolayer

/*
#include <stdlib.h>
#include <stdint.h>
#include <rolayer.h>

// Defined in callback.go (//export).
extern int goRolayerRead(void *buf, size_t capacity, size_t *n_read, uintptr_t handle);

static int rl_stage_read(void *buf, size_t cap, size_t *n_read, void *user_data) {
	return goRolayerRead(buf, cap, n_read, (uintptr_t)user_data);
}

// user_data carries a runtime/cgo.Handle (an integer): C never holds a Go pointer.
static int rl_stage(rolayer_staged **out, rolayer_store *store, uintptr_t handle, const char *media_type,
                    const char *digest, int64_t size, rolayer_error **err) {
	rolayer_register_options o = ROLAYER_REGISTER_OPTIONS_INIT;
	o.descriptor_media_type = media_type;
	o.descriptor_digest = digest;
	o.descriptor_size = size;
	return rolayer_stage(out, store, rl_stage_read, (void *)handle, &o, err);
}
*/
import "C"

import (
	"context"
	"io"
	"runtime"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// Staged is a layer applied but not yet registered: the first half of a two-phase register
// (include/rolayer/stage.h), so that the layers of an image are applied at once, each on its own
// goroutine, and committed in chain order:
//
//	staged := make([]*rolayer.Staged, len(blobs))
//	// on one goroutine per layer:  staged[i], errs[i] = store.Stage(blobReader(i), desc[i])
//	parent := rolayer.ChainID("")
//	for _, st := range staged {      // in chain order, base first
//		l, err := st.Commit(parent)  // same outcome as Register(stream, parent)
//		...
//		parent = l.ChainID()
//	}
//
// Commit gives the same Layer, ChainID and errors as RegisterWithDescriptor of the same stream on
// that parent; an existing ChainID gives a new reference to the existing layer. A Staged that is
// not committed is discarded by Discard, or by the garbage collector when it is dropped: a
// staged layer is not a registered layer, and discarding it deletes nothing that was registered.
//
// A Staged is safe for use by several goroutines (its calls are serialised).
type Staged struct {
	s          *Store
	mu         sync.Mutex
	c          *C.rolayer_staged // nil once committed or discarded
	diffID     DiffID
	streamSize int64
	deferred   bool
	committed  bool
}

// Stage reads the uncompressed tar stream ts to its end, hashes and validates it, and applies
// it without its parent (see Staged), recording the distribution descriptor desc (the zero
// Descriptor for none). It is safe to call from many goroutines at once on one Store. ts is read
// on the calling goroutine during the call only, with the same error and panic handling as
// RegisterWithDescriptor (ErrArchive, ErrUnsafe, a reader's error wrapped in a CodeCallback
// *Error). A failure leaves nothing behind.
func (s *Store) Stage(ts io.Reader, desc Descriptor) (*Staged, error) {
	if ts == nil {
		return nil, &Error{Code: CodeInvalid, Message: "rolayer: Stage needs a reader"}
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
	var out *C.rolayer_staged
	var cerr *C.rolayer_error
	rc := C.rl_stage(&out, s.c, C.uintptr_t(h), cd.media, cd.digest, cd.size, &cerr)
	runtime.KeepAlive(st)
	if rc != 0 {
		return nil, st.failure(rc, cerr)
	}
	staged := &Staged{
		s:          s,
		c:          out,
		diffID:     DiffID(C.GoString(C.rolayer_staged_diff_id(out))),
		streamSize: int64(C.rolayer_staged_stream_size(out)),
		deferred:   C.rolayer_staged_deferred(out) == 1,
	}
	runtime.SetFinalizer(staged, (*Staged).Discard)
	return staged, nil
}

// StageContext is Stage with a context, checked before every Read of ts as
// RegisterWithDescriptorContext does: once it is done, staging stops, nothing is left behind and
// the returned *Error (CodeCallback) wraps ctx.Err().
func (s *Store) StageContext(ctx context.Context, ts io.Reader, desc Descriptor) (*Staged, error) {
	if ctx == nil {
		return nil, &Error{Code: CodeInvalid, Message: "rolayer: StageContext needs a context"}
	}
	if ts == nil {
		return nil, &Error{Code: CodeInvalid, Message: "rolayer: Stage needs a reader"}
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Code: CodeCallback, Message: "rolayer: staging cancelled: " + err.Error(), Err: err}
	}
	st, err := s.Stage(&ctxReader{ctx: ctx, r: ts}, desc)
	if e, ok := err.(*Error); ok && e.Code == CodeCallback && e.Err != nil && e.Err == ctx.Err() {
		e.Message = "rolayer: staging cancelled: " + e.Err.Error()
	}
	return st, err
}

// DiffID is the staged layer's DiffID (sha256 of its stream).
func (st *Staged) DiffID() DiffID { return st.diffID }

// StreamSize is the size of the staged stream in bytes.
func (st *Staged) StreamSize() int64 { return st.streamSize }

// Deferred tells whether the layer is applied at Commit rather than while it was staged: on a
// driver other than "dir", or a "dir" layer that depends on its parent (a hard link to a file
// outside the layer, a parent directory it did not declare). Such a layer is still correct; it
// only does not gain from staging in parallel.
func (st *Staged) Deferred() bool { return st.deferred }

// Commit registers the staged layer on top of parent ("" for a base layer) and returns a
// reference (give it back with Store.Release, as for Register). Errors are Register's:
// ErrLayerDoesNotExist for an unknown parent, ErrMaxDepthExceeded, ErrArchive for a hard link
// whose target is in neither the layer nor the parent chain, ErrDigestMismatch / ErrCorrupt when
// the staged data was modified before a commit that applies it again. After a failure the
// staged layer is unchanged and may be committed again or discarded. Once a Commit succeeded,
// the staged layer is used up: a second Commit fails with ErrInvalid, Discard does nothing.
func (st *Staged) Commit(parent ChainID) (Layer, error) {
	var cparent *C.char
	if parent != "" {
		cparent = C.CString(string(parent))
		defer C.free(unsafe.Pointer(cparent))
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.c == nil {
		what := "discarded"
		if st.committed {
			what = "committed"
		}
		return nil, &Error{Code: CodeInvalid, Message: "rolayer: the staged layer " + string(st.diffID) + " was already " + what}
	}
	s := st.s
	if !s.gate.enter() {
		return nil, errClosed("store")
	}
	defer s.gate.exit()
	var out *C.rolayer_layer
	var cerr *C.rolayer_error
	if rc := C.rolayer_stage_commit(&out, s.c, st.c, cparent, &cerr); rc != 0 {
		return nil, fromC(rc, cerr)
	}
	C.rolayer_stage_free(st.c) // committed: only the handle is left to free
	st.c, st.committed = nil, true
	runtime.SetFinalizer(st, nil)
	return s.newRef(out), nil
}

// Discard drops a staged layer that was not committed: its applied data and temporary files are
// removed (when its Store is already closed, they are left to the store's next Open, which
// removes them). It deletes nothing registered. Discard is idempotent and a no-op after a
// successful Commit.
func (st *Staged) Discard() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.c == nil {
		return
	}
	// Not gated: rolayer_stage_free is valid after the store was freed (see above), and a
	// Discard must not wait for Close.
	C.rolayer_stage_free(st.c)
	st.c = nil
	runtime.SetFinalizer(st, nil)
}
