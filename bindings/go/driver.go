// SPDX-License-Identifier: Apache-2.0

package rolayer

/*
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <rolayer.h>

// Defined in driver_callbacks.go (//export). Every one gets the store's user data, a
// runtime/cgo.Handle, as an integer: C never holds a Go pointer.
extern int goDrvCreate(char *id, char *parent, rolayer_driver_error *derr, uintptr_t ud);
extern int goDrvRemove(char *id, rolayer_driver_error *derr, uintptr_t ud);
extern int goDrvApplyDiff(char *id, char *parent, rolayer_read_fn read, void *read_data, int64_t *size,
                          rolayer_driver_error *derr, uintptr_t ud);
extern int goDrvDiffOpen(uintptr_t *stream, char *id, char *ancestor, rolayer_driver_error *derr, uintptr_t ud);
extern int goDrvDiffRead(uintptr_t stream, void *buf, size_t cap, size_t *n_read, rolayer_driver_error *derr,
                         uintptr_t ud);
extern void goDrvDiffClose(uintptr_t stream, uintptr_t ud);
extern int goDrvPayloadOpen(uintptr_t *payload, char *id, char *path, rolayer_driver_error *derr, uintptr_t ud);
extern int goDrvPayloadRead(uintptr_t payload, uint64_t offset, void *buf, size_t cap, size_t *n_read,
                            rolayer_driver_error *derr, uintptr_t ud);
extern void goDrvPayloadClose(uintptr_t payload, uintptr_t ud);
extern int goDrvMetadata(char *id, rolayer_metadata_emit_fn emit, void *emit_data, rolayer_driver_error *derr,
                         uintptr_t ud);
extern void goDrvDestroy(uintptr_t ud);

// Shims with the C signatures: cgo cannot take the address of a Go function. Diff and payload
// handles are cgo.Handles too, carried in the void * the library keeps.
static int rl_drv_create(const char *id, const char *parent, rolayer_driver_error *derr, void *ud) {
	return goDrvCreate((char *)id, (char *)parent, derr, (uintptr_t)ud);
}
static int rl_drv_remove(const char *id, rolayer_driver_error *derr, void *ud) {
	return goDrvRemove((char *)id, derr, (uintptr_t)ud);
}
static int rl_drv_apply_diff(const char *id, const char *parent, rolayer_read_fn read, void *read_data,
                             int64_t *size, rolayer_driver_error *derr, void *ud) {
	return goDrvApplyDiff((char *)id, (char *)parent, read, read_data, size, derr, (uintptr_t)ud);
}
static int rl_drv_diff_open(void **stream, const char *id, const char *ancestor, rolayer_driver_error *derr,
                            void *ud) {
	uintptr_t h = 0;
	int rc = goDrvDiffOpen(&h, (char *)id, (char *)ancestor, derr, (uintptr_t)ud);
	*stream = (void *)h;
	return rc;
}
static int rl_drv_diff_read(void *stream, void *buf, size_t cap, size_t *n_read, rolayer_driver_error *derr,
                            void *ud) {
	return goDrvDiffRead((uintptr_t)stream, buf, cap, n_read, derr, (uintptr_t)ud);
}
static void rl_drv_diff_close(void *stream, void *ud) { goDrvDiffClose((uintptr_t)stream, (uintptr_t)ud); }
static int rl_drv_payload_open(void **payload, const char *id, const char *path, rolayer_driver_error *derr,
                               void *ud) {
	uintptr_t h = 0;
	int rc = goDrvPayloadOpen(&h, (char *)id, (char *)path, derr, (uintptr_t)ud);
	*payload = (void *)h;
	return rc;
}
static int rl_drv_payload_read(void *payload, uint64_t offset, void *buf, size_t cap, size_t *n_read,
                               rolayer_driver_error *derr, void *ud) {
	return goDrvPayloadRead((uintptr_t)payload, offset, buf, cap, n_read, derr, (uintptr_t)ud);
}
static void rl_drv_payload_close(void *payload, void *ud) {
	goDrvPayloadClose((uintptr_t)payload, (uintptr_t)ud);
}
static int rl_drv_metadata(const char *id, rolayer_metadata_emit_fn emit, void *emit_data,
                           rolayer_driver_error *derr, void *ud) {
	return goDrvMetadata((char *)id, emit, emit_data, derr, (uintptr_t)ud);
}
static void rl_drv_destroy(void *ud) { goDrvDestroy((uintptr_t)ud); }

// The ops, in C memory, with a copy of name; freed by rl_drv_ops_free.
static rolayer_driver_ops *rl_drv_ops_new(const char *name, uint32_t caps) {
	rolayer_driver_ops *o = calloc(1, sizeof *o);
	if (!o) return NULL;
	o->version = ROLAYER_DRIVER_OPS_VERSION;
	o->name = strdup(name);
	o->capabilities = caps;
	o->create = rl_drv_create;
	o->remove = rl_drv_remove;
	o->apply_diff = rl_drv_apply_diff;
	o->diff_open = rl_drv_diff_open;
	o->diff_read = rl_drv_diff_read;
	o->diff_close = rl_drv_diff_close;
	o->payload_open = rl_drv_payload_open;
	o->payload_read = rl_drv_payload_read;
	o->payload_close = rl_drv_payload_close;
	o->metadata = rl_drv_metadata;
	o->destroy = rl_drv_destroy;
	return o;
}

static void rl_drv_ops_free(rolayer_driver_ops *o) {
	if (!o) return;
	free((void *)o->name);
	free(o);
}

static int rl_store_open_driver(rolayer_store **out, const char *root, const rolayer_driver_ops *ops,
                                uintptr_t ud, int busy_ms, int read_only, rolayer_error **err) {
	rolayer_store_options o = ROLAYER_STORE_OPTIONS_INIT;
	o.driver_ops = ops;
	o.driver_user_data = (void *)ud;
	o.busy_timeout_ms = busy_ms;
	o.read_only = read_only;
	return rolayer_store_open_ext(out, root, &o, err);
}

// Calls the library's read function given to apply_diff, and a metadata emit function.
static int rl_call_read(rolayer_read_fn read, void *buf, size_t cap, size_t *n_read, void *read_data) {
	return read(buf, cap, n_read, read_data);
}
static int rl_call_emit(rolayer_metadata_emit_fn emit, const char *key, const char *value, void *emit_data) {
	return emit(key, value, emit_data);
}
*/
import "C"

import (
	"errors"
	"io"
	"runtime/cgo"
	"strings"
	"sync"
	"unsafe"
)

// Driver is a graph driver written in Go: it stores the layers' data in place of a built-in
// driver ("dir", "exact"). Pass it in Options.CustomDriver; the store calls it through the C
// ABI (rolayer_driver_ops, see docs/drivers.md in the project for the full contract).
//
// Layers are named by ids the store chooses (not ChainIDs); a parent is named by its own id
// ("" for a base layer). The store calls the methods on the goroutine of the call that needs
// them (Register calls Create and ApplyDiff, a stream's Read calls Diff or Payload, Release
// calls Remove, …), possibly from several goroutines at once for different layers, never at
// once for one layer. A Driver must therefore be safe for concurrent use. It must not call back
// into the store that uses it, nor call runtime.Goexit (t.FailNow, t.Skip) from a method.
//
// A method's error fails the operation with an *Error of CodeCallback (errors.Is(err,
// ErrCallback)) whose message carries the error's text and whose UserCode is the Code of a
// *DriverError in the error's chain, else DriverErrorCode. A panic in a method is recovered
// before it reaches C and fails the operation the same way, with UserCode DriverPanicCode and
// the panic value in the message. Either way the store stays consistent: a failed Register
// leaves nothing behind, a failed Remove leaves a mark that the next Open retries.
//
// If the Driver also implements io.Closer, Close is called once when the store no longer needs
// it: at the end of Store.Close, or when Open fails.
type Driver interface {
	// Name is recorded in the store when it is created: reopening needs a driver of the same
	// name. Called once, by Open.
	Name() string
	// Capabilities are read once, by Open.
	Capabilities() DriverCapabilities
	// Create makes empty storage for layer id on top of parent ("" for a base layer).
	Create(id, parent string) error
	// Remove deletes layer id's storage. Removing an id that does not exist succeeds.
	Remove(id string) error
	// ApplyDiff stores the uncompressed tar read from diff (it need not be read to its end)
	// in layer id and returns the bytes the layer stores. The data must be durable when it
	// returns nil. diff may be read from another goroutine, but not after ApplyDiff returns.
	ApplyDiff(id, parent string, diff io.Reader) (size int64, err error)
	// Diff returns the differences of layer id against ancestor ("" = the whole flattened
	// chain) as a tar stream. With DriverCapabilities.ExactDiffs, the diff against the parent
	// must be the registered stream byte for byte (the store verifies it against the DiffID).
	// The stream is read by one goroutine at a time, then closed.
	Diff(id, ancestor string) (io.ReadCloser, error)
	// Payload opens the content of a regular file of layer id, named by its cleaned relative
	// path as applied (no leading "/", "." and ".." resolved), for random access; holes read as
	// zeros. Without ExactDiffs the store rebuilds exports from it: it opens each regular file
	// of the registered stream in stream order, so a path that occurs twice is opened twice,
	// and reads it at offsets of the file's content. ReadAt follows io.ReaderAt (io.EOF at the
	// end is fine). Drivers with ExactDiffs may return an error: it is never called.
	Payload(id, path string) (PayloadReader, error)
	// Metadata describes layer id as key/value pairs (Layer.Metadata); nil is fine.
	Metadata(id string) (map[string]string, error)
}

// DriverCapabilities are what a Driver declares to the store.
type DriverCapabilities struct {
	// ExactDiffs: Diff(id, parent) reproduces the registered stream byte for byte. The store
	// then keeps no record of its own and exports that diff, still verified against the
	// DiffID (a driver that claims it and lies is caught with ErrDigestMismatch). Without it
	// the store records every non-payload byte at Register and reads payloads through Payload.
	ExactDiffs bool
}

// PayloadReader is an open regular-file payload of a Driver.
type PayloadReader interface {
	io.ReaderAt
	io.Closer
}

// DriverError lets a Driver choose the code (Error.UserCode) a failing method reports:
// return it, or wrap it, as the method's error.
type DriverError struct {
	Code int // non-zero; 0 is taken as DriverErrorCode
	Err  error
}

func (e *DriverError) Error() string {
	if e.Err == nil {
		return "driver error"
	}
	return e.Err.Error()
}

func (e *DriverError) Unwrap() error { return e.Err }

// The UserCode of a Driver method's failure when no DriverError says otherwise, and of a panic.
const (
	DriverErrorCode = 1
	DriverPanicCode = 2
)

// driverState is what the store's user data (a cgo.Handle) names.
type driverState struct {
	d      Driver
	handle cgo.Handle
	once   sync.Once
}

// finish ends the driver's use: the handle goes, and the driver's Close (if any) is called.
// Called by the destroy callback, or by Open when the library did not call it.
func (ds *driverState) finish() {
	ds.once.Do(func() {
		ds.handle.Delete()
		closeDriver(ds.d)
	})
}

// closeDriver calls d's Close, if it has one, dropping its error and panic.
func closeDriver(d Driver) {
	if c, ok := d.(io.Closer); ok {
		defer func() { _ = recover() }()
		_ = c.Close()
	}
}

// openCustom opens the store at croot with the Go driver d. On success the returned ops must be
// freed with freeOps once the store is freed (the library keeps its own copy; this is cheap).
func openCustom(croot *C.char, d Driver, busy C.int, ro C.int) (*C.rolayer_store, *C.rolayer_driver_ops, error) {
	name := d.Name()
	caps := d.Capabilities()
	if strings.IndexByte(name, 0) >= 0 {
		closeDriver(d)
		return nil, nil, &Error{Code: CodeInvalid, Message: "rolayer: the driver's name contains a NUL byte"}
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var ccaps C.uint32_t
	if caps.ExactDiffs {
		ccaps |= C.ROLAYER_DRIVER_CAP_EXACT_DIFFS
	}
	ops := C.rl_drv_ops_new(cname, ccaps)
	if ops == nil || ops.name == nil {
		C.rl_drv_ops_free(ops)
		return nil, nil, &Error{Code: CodeNoMemory, Message: CodeNoMemory.Text()}
	}
	ds := &driverState{d: d}
	ds.handle = cgo.NewHandle(ds)
	var out *C.rolayer_store
	var cerr *C.rolayer_error
	if rc := C.rl_store_open_driver(&out, croot, ops, C.uintptr_t(ds.handle), busy, ro, &cerr); rc != 0 {
		// The library calls destroy when the store fails to open, except for failures it
		// finds before it takes the driver: finish is idempotent.
		ds.finish()
		C.rl_drv_ops_free(ops)
		return nil, nil, fromC(rc, cerr)
	}
	return out, ops, nil
}

func freeOps(ops *C.rolayer_driver_ops) { C.rl_drv_ops_free(ops) }

// cReader is the io.Reader a Driver's ApplyDiff gets: the library's read function, valid until
// ApplyDiff returns (then Read fails). Reads are serialised.
type cReader struct {
	mu   sync.Mutex
	fn   C.rolayer_read_fn
	data unsafe.Pointer // the library's, not Go memory
	done bool           // ApplyDiff returned
	eof  bool
	err  error
}

var errInputFailed = errors.New("rolayer: the layer input failed (the store reports why)")

func (r *cReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.done:
		return 0, errors.New("rolayer: ApplyDiff's reader used after ApplyDiff returned")
	case r.err != nil:
		return 0, r.err
	case r.eof:
		return 0, io.EOF
	case len(p) == 0:
		return 0, nil
	}
	var n C.size_t
	// p is Go memory without Go pointers, written by the library during the call only.
	if C.rl_call_read(r.fn, unsafe.Pointer(&p[0]), C.size_t(len(p)), &n, r.data) != 0 {
		r.err = errInputFailed
		return 0, r.err
	}
	if n == 0 {
		r.eof = true
		return 0, io.EOF
	}
	if int(n) > len(p) {
		r.err = errors.New("rolayer: the layer input reported more bytes than asked for")
		return 0, r.err
	}
	return int(n), nil
}

func (r *cReader) invalidate() {
	r.mu.Lock()
	r.done = true
	r.fn, r.data = nil, nil
	r.mu.Unlock()
}

// emitMetadata reports one key/value pair through the library's emit function.
func emitMetadata(emit C.rolayer_metadata_emit_fn, data unsafe.Pointer, k, v string) error {
	if strings.IndexByte(k, 0) >= 0 || strings.IndexByte(v, 0) >= 0 {
		return errors.New("rolayer: a metadata key or value contains a NUL byte")
	}
	ck, cv := C.CString(k), C.CString(v)
	defer C.free(unsafe.Pointer(ck))
	defer C.free(unsafe.Pointer(cv))
	if C.rl_call_emit(emit, ck, cv, data) != 0 {
		return errors.New("rolayer: the store refused a metadata pair")
	}
	return nil
}
