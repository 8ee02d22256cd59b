// SPDX-License-Identifier: Apache-2.0

package rolayer

/*
#include <stddef.h>
#include <stdint.h>
*/
import "C"

import (
	"errors"
	"io"
	"runtime/cgo"
	"runtime/debug"
	"unsafe"
)

// The read callback's non-zero results (rolayer_error_user_code of the aborted registration).
const (
	readAbortError  = 1 // the io.Reader returned an error
	readAbortPanic  = 2 // the io.Reader panicked
	readAbortHandle = 3 // the handle did not name a reader (a bug)
)

// readState is what a registration's cgo.Handle names: the reader and how it failed.
// It is used by one goroutine only (the registering one: callbacks run on the calling thread).
type readState struct {
	r        io.Reader
	eof      bool
	err      error
	panicked *ReaderPanicError
}

// maxEmptyReads is how many (0, nil) reads in a row are taken before giving up, as bufio does.
const maxEmptyReads = 100

//export goRolayerRead
func goRolayerRead(buf unsafe.Pointer, capacity C.size_t, nRead *C.size_t, handle C.uintptr_t) (rc C.int) {
	*nRead = 0
	st, ok := cgo.Handle(handle).Value().(*readState)
	if !ok {
		return readAbortHandle
	}
	// A panic must not unwind through the C library: keep it for the Go side.
	defer func() {
		if v := recover(); v != nil {
			st.panicked = &ReaderPanicError{Value: v, Stack: debug.Stack()}
			*nRead = 0
			rc = readAbortPanic
		}
	}()
	switch {
	case st.panicked != nil:
		return readAbortPanic
	case st.err != nil:
		return readAbortError
	case st.eof || capacity == 0:
		return 0
	}
	// The library's buffer (C memory), filled as far as the reader goes: one callback per
	// buffer, not per small Read.
	p := unsafe.Slice((*byte)(buf), int(capacity))
	n, empty := 0, 0
	for n < len(p) {
		m, err := st.r.Read(p[n:])
		if m < 0 || m > len(p)-n {
			st.err = errors.New("rolayer: the layer reader returned an invalid count")
			return readAbortError
		}
		n += m
		if err == io.EOF {
			st.eof = true
			break
		}
		if err != nil {
			st.err = err
			return readAbortError
		}
		if m == 0 {
			if empty++; empty >= maxEmptyReads {
				st.err = io.ErrNoProgress
				return readAbortError
			}
		} else {
			empty = 0
		}
	}
	*nRead = C.size_t(n)
	return 0
}
