// SPDX-License-Identifier: Apache-2.0

package rolayer

/*
#include <stdint.h>
#include <stdlib.h>
#include <rolayer.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"math"
	"runtime/cgo"
	"sort"
	"unsafe"
)

// The C callbacks of a Go Driver (see driver.go for the shims that call them). Every one
// recovers panics: a panic must never unwind through the C library.

func driverOf(ud C.uintptr_t) *driverState {
	return cgo.Handle(ud).Value().(*driverState)
}

func goString(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

func setDriverError(derr *C.rolayer_driver_error, msg string) {
	if derr == nil {
		return
	}
	c := C.CString(msg)
	C.rolayer_driver_error_set(derr, c)
	C.free(unsafe.Pointer(c))
}

// panicMessage formats a panic value; formatting may itself panic.
func panicMessage(v any) (s string) {
	defer func() {
		if recover() != nil {
			s = "panic (the value could not be printed)"
		}
	}()
	return fmt.Sprintf("panic: %v", v)
}

// errorMessage is err's text; Error may itself panic.
func errorMessage(err error) (s string) {
	defer func() {
		if v := recover(); v != nil {
			s = "error (its text: " + panicMessage(v) + ")"
		}
	}()
	return err.Error()
}

func driverCode(err error) C.int {
	var de *DriverError
	if errors.As(err, &de) && de.Code != 0 {
		return C.int(de.Code)
	}
	return DriverErrorCode
}

// driverCall runs f and turns its error or panic into the callback's result and message.
func driverCall(derr *C.rolayer_driver_error, f func() error) (rc C.int) {
	defer func() {
		if v := recover(); v != nil {
			setDriverError(derr, panicMessage(v))
			rc = DriverPanicCode
		}
	}()
	if err := f(); err != nil {
		code := driverCode(err)
		setDriverError(derr, errorMessage(err))
		return code
	}
	return 0
}

// quietly runs f, dropping its panic (for the callbacks that cannot report one).
func quietly(f func()) {
	defer func() { _ = recover() }()
	f()
}

//export goDrvCreate
func goDrvCreate(id, parent *C.char, derr *C.rolayer_driver_error, ud C.uintptr_t) C.int {
	return driverCall(derr, func() error {
		return driverOf(ud).d.Create(goString(id), goString(parent))
	})
}

//export goDrvRemove
func goDrvRemove(id *C.char, derr *C.rolayer_driver_error, ud C.uintptr_t) C.int {
	return driverCall(derr, func() error {
		return driverOf(ud).d.Remove(goString(id))
	})
}

//export goDrvApplyDiff
func goDrvApplyDiff(id, parent *C.char, read C.rolayer_read_fn, readData unsafe.Pointer, size *C.int64_t,
	derr *C.rolayer_driver_error, ud C.uintptr_t) C.int {
	r := &cReader{fn: read, data: readData}
	defer r.invalidate()
	var n int64
	rc := driverCall(derr, func() error {
		var err error
		n, err = driverOf(ud).d.ApplyDiff(goString(id), goString(parent), r)
		return err
	})
	if rc == 0 {
		*size = C.int64_t(n)
	}
	return rc
}

// diffState is what a diff stream's handle names.
type diffState struct {
	r   io.ReadCloser
	eof bool
}

//export goDrvDiffOpen
func goDrvDiffOpen(stream *C.uintptr_t, id, ancestor *C.char, derr *C.rolayer_driver_error, ud C.uintptr_t) C.int {
	*stream = 0
	var rc io.ReadCloser
	code := driverCall(derr, func() error {
		var err error
		rc, err = driverOf(ud).d.Diff(goString(id), goString(ancestor))
		if err == nil && rc == nil {
			err = errors.New("Diff returned neither a stream nor an error")
		}
		return err
	})
	if code == 0 {
		*stream = C.uintptr_t(cgo.NewHandle(&diffState{r: rc}))
	}
	return code
}

//export goDrvDiffRead
func goDrvDiffRead(stream C.uintptr_t, buf unsafe.Pointer, capacity C.size_t, nRead *C.size_t,
	derr *C.rolayer_driver_error, ud C.uintptr_t) C.int {
	*nRead = 0
	var n int
	rc := driverCall(derr, func() error {
		st := cgo.Handle(stream).Value().(*diffState)
		if st.eof || capacity == 0 {
			return nil
		}
		// Filled as far as the stream goes: one callback per library buffer.
		p := unsafe.Slice((*byte)(buf), int(capacity))
		empty := 0
		for n < len(p) {
			m, err := st.r.Read(p[n:])
			if m < 0 || m > len(p)-n {
				return errors.New("the diff stream returned an invalid count")
			}
			n += m
			if err == io.EOF {
				st.eof = true
				return nil
			}
			if err != nil {
				return err
			}
			if m == 0 {
				if empty++; empty >= maxEmptyReads {
					return io.ErrNoProgress
				}
			} else {
				empty = 0
			}
		}
		return nil
	})
	if rc == 0 {
		*nRead = C.size_t(n)
	}
	return rc
}

//export goDrvDiffClose
func goDrvDiffClose(stream C.uintptr_t, ud C.uintptr_t) {
	if stream == 0 {
		return
	}
	quietly(func() {
		h := cgo.Handle(stream)
		st, _ := h.Value().(*diffState)
		h.Delete()
		if st != nil {
			_ = st.r.Close()
		}
	})
}

//export goDrvPayloadOpen
func goDrvPayloadOpen(payload *C.uintptr_t, id, path *C.char, derr *C.rolayer_driver_error, ud C.uintptr_t) C.int {
	*payload = 0
	var p PayloadReader
	code := driverCall(derr, func() error {
		var err error
		p, err = driverOf(ud).d.Payload(goString(id), goString(path))
		if err == nil && p == nil {
			err = errors.New("Payload returned neither a reader nor an error")
		}
		return err
	})
	if code == 0 {
		*payload = C.uintptr_t(cgo.NewHandle(p))
	}
	return code
}

//export goDrvPayloadRead
func goDrvPayloadRead(payload C.uintptr_t, offset C.uint64_t, buf unsafe.Pointer, capacity C.size_t,
	nRead *C.size_t, derr *C.rolayer_driver_error, ud C.uintptr_t) C.int {
	*nRead = 0
	var n int
	rc := driverCall(derr, func() error {
		p := cgo.Handle(payload).Value().(PayloadReader)
		if capacity == 0 {
			return nil
		}
		if uint64(offset) > math.MaxInt64 {
			return errors.New("payload offset out of range")
		}
		var err error
		n, err = p.ReadAt(unsafe.Slice((*byte)(buf), int(capacity)), int64(offset))
		if n < 0 || n > int(capacity) {
			n = 0
			return errors.New("the payload returned an invalid count")
		}
		if err == io.EOF {
			return nil // a short read at the end; the store checks the length
		}
		return err
	})
	if rc == 0 {
		*nRead = C.size_t(n)
	}
	return rc
}

//export goDrvPayloadClose
func goDrvPayloadClose(payload C.uintptr_t, ud C.uintptr_t) {
	if payload == 0 {
		return
	}
	quietly(func() {
		h := cgo.Handle(payload)
		p, _ := h.Value().(PayloadReader)
		h.Delete()
		if p != nil {
			_ = p.Close()
		}
	})
}

//export goDrvMetadata
func goDrvMetadata(id *C.char, emit C.rolayer_metadata_emit_fn, emitData unsafe.Pointer,
	derr *C.rolayer_driver_error, ud C.uintptr_t) C.int {
	return driverCall(derr, func() error {
		m, err := driverOf(ud).d.Metadata(goString(id))
		if err != nil {
			return err
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := emitMetadata(emit, emitData, k, m[k]); err != nil {
				return err
			}
		}
		return nil
	})
}

//export goDrvDestroy
func goDrvDestroy(ud C.uintptr_t) {
	quietly(func() { driverOf(ud).finish() })
}
