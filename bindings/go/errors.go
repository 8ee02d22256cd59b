// SPDX-License-Identifier: Apache-2.0

package rolayer

/*
#include <rolayer.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"syscall"
)

// Code is a librolayer status code (the ROLAYER_E* values of rolayer/common.h; pinned).
type Code int

// The status codes. Their values never change.
const (
	CodeOK          Code = C.ROLAYER_OK
	CodeInvalid     Code = C.ROLAYER_EINVAL
	CodeNotFound    Code = C.ROLAYER_ENOTFOUND
	CodeExists      Code = C.ROLAYER_EEXISTS
	CodeNotRetained Code = C.ROLAYER_ENOTRETAINED
	CodeMaxDepth    Code = C.ROLAYER_EMAXDEPTH
	CodeNotAncestor Code = C.ROLAYER_ENOTANCESTOR
	CodeDigest      Code = C.ROLAYER_EDIGEST
	CodeCorrupt     Code = C.ROLAYER_ECORRUPT
	CodeArchive     Code = C.ROLAYER_EARCHIVE
	CodeUnsafe      Code = C.ROLAYER_EUNSAFE
	CodeIO          Code = C.ROLAYER_EIO
	CodeNoMemory    Code = C.ROLAYER_ENOMEM
	CodeCallback    Code = C.ROLAYER_EUSER
	CodeBusy        Code = C.ROLAYER_EBUSY
	CodeUnsupported Code = C.ROLAYER_EUNSUPPORTED
)

var codeNames = map[Code]string{
	CodeOK:          "ROLAYER_OK",
	CodeInvalid:     "ROLAYER_EINVAL",
	CodeNotFound:    "ROLAYER_ENOTFOUND",
	CodeExists:      "ROLAYER_EEXISTS",
	CodeNotRetained: "ROLAYER_ENOTRETAINED",
	CodeMaxDepth:    "ROLAYER_EMAXDEPTH",
	CodeNotAncestor: "ROLAYER_ENOTANCESTOR",
	CodeDigest:      "ROLAYER_EDIGEST",
	CodeCorrupt:     "ROLAYER_ECORRUPT",
	CodeArchive:     "ROLAYER_EARCHIVE",
	CodeUnsafe:      "ROLAYER_EUNSAFE",
	CodeIO:          "ROLAYER_EIO",
	CodeNoMemory:    "ROLAYER_ENOMEM",
	CodeCallback:    "ROLAYER_EUSER",
	CodeBusy:        "ROLAYER_EBUSY",
	CodeUnsupported: "ROLAYER_EUNSUPPORTED",
}

// String returns the C macro name ("ROLAYER_ENOTFOUND"), or "ROLAYER_E(<n>)" for an unknown code.
func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("ROLAYER_E(%d)", int(c))
}

// Text is the library's static description of the code (rolayer_strerror).
func (c Code) Text() string { return C.GoString(C.rolayer_strerror(C.int(c))) }

// Error is every error this package returns from the library: the status code and one-line
// message of the C error object, with its details. Compare with errors.Is against the sentinels
// below (which match on Code), or get at the fields with errors.As.
type Error struct {
	Code    Code
	Message string
	// DiffID of the layer whose data failed verification (CodeDigest, CodeCorrupt), else "".
	DiffID DiffID
	// Path of the archive entry concerned (CodeCorrupt, CodeUnsafe, CodeArchive) when known.
	Path string
	// Errno is the operating-system error behind a CodeIO, else 0.
	Errno syscall.Errno
	// UserCode is the non-zero value a callback returned (CodeCallback), else 0.
	UserCode int
	// Err is the Go cause: the io.Reader's error or a *ReaderPanicError for a failed Register,
	// ErrClosed for a call on a closed store or stream; nil otherwise.
	Err error

	sentinel bool
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Code.Text()
	}
	return msg
}

// Unwrap gives the Go cause and, for I/O errors, the errno (so errors.Is(err, fs.ErrNotExist)
// and errors.Is(err, syscall.ENOSPC) work).
func (e *Error) Unwrap() []error {
	var out []error
	if e.Err != nil {
		out = append(out, e.Err)
	}
	if e.Errno != 0 {
		out = append(out, e.Errno)
	}
	return out
}

// Is reports whether target is the sentinel for e's code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.sentinel && t.Code == e.Code
}

func sentinel(code Code, msg string) *Error { return &Error{Code: code, Message: msg, sentinel: true} }

// Sentinels for errors.Is; each matches every *Error of its code. The first three have the
// Docker engine's texts.
var (
	ErrLayerDoesNotExist = sentinel(CodeNotFound, "layer does not exist")
	ErrLayerNotRetained  = sentinel(CodeNotRetained, "layer not retained")
	ErrMaxDepthExceeded  = sentinel(CodeMaxDepth, "max depth exceeded")
	ErrNotAncestor       = sentinel(CodeNotAncestor, "layer is not an ancestor of the specified layer")
	ErrDigestMismatch    = sentinel(CodeDigest, "layer data does not match its DiffID")
	ErrCorrupt           = sentinel(CodeCorrupt, "stored layer data or record is damaged")
	ErrArchive           = sentinel(CodeArchive, "malformed or unsupported tar archive")
	ErrUnsafe            = sentinel(CodeUnsafe, "archive path escapes the layer")
	ErrBusy              = sentinel(CodeBusy, "store is busy")
	ErrUnsupported       = sentinel(CodeUnsupported, "operation not supported")
	ErrInvalid           = sentinel(CodeInvalid, "invalid argument")
	ErrExists            = sentinel(CodeExists, "already exists")
	ErrIO                = sentinel(CodeIO, "I/O error")
	ErrNoMemory          = sentinel(CodeNoMemory, "out of memory")
	ErrCallback          = sentinel(CodeCallback, "a callback aborted the operation")
)

// ErrClosed is the cause (errors.Is) of the error of any call on a closed Store, or of a Read
// on a closed stream. Such errors have CodeInvalid, as the C library's own "store was closed".
var ErrClosed = errors.New("rolayer: closed")

func errClosed(what string) error {
	return &Error{Code: CodeInvalid, Message: "rolayer: the " + what + " is closed", Err: ErrClosed}
}

// VerificationError is the error of a layer whose stored data does not reproduce its DiffID
// (a stream read, Verify): CodeDigest at the end of the stream, or CodeCorrupt at the entry
// whose stored payload is damaged (Path names it). errors.Is(err, ErrDigestMismatch) /
// ErrCorrupt hold through Unwrap.
type VerificationError struct {
	DiffID DiffID
	Path   string // the entry concerned, when known
	Err    *Error
}

func (e *VerificationError) Error() string { return e.Err.Error() }
func (e *VerificationError) Unwrap() error { return e.Err }

// ReaderPanicError is the cause of a Register whose io.Reader panicked: the panic is recovered
// inside the read callback (a panic must not unwind through C), the registration is aborted and
// Register returns an *Error{Code: CodeCallback} whose Err is this value.
type ReaderPanicError struct {
	Value any    // what the reader panicked with
	Stack []byte // the reader's stack at the panic
}

func (e *ReaderPanicError) Error() string {
	return fmt.Sprintf("rolayer: the layer reader panicked: %v", e.Value)
}

// Unwrap returns the panic value when it is an error.
func (e *ReaderPanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

// fromC turns a status code and the C error object (freed here; may be NULL) into an *Error.
func fromC(rc C.int, cerr *C.rolayer_error) *Error {
	e := &Error{Code: Code(rc)}
	if cerr != nil {
		if c := Code(C.rolayer_error_code(cerr)); c != CodeOK {
			e.Code = c
		}
		e.Message = C.GoString(C.rolayer_error_message(cerr))
		e.Errno = syscall.Errno(C.rolayer_error_errno(cerr))
		e.UserCode = int(C.rolayer_error_user_code(cerr))
		if p := C.rolayer_error_diff_id(cerr); p != nil {
			e.DiffID = DiffID(C.GoString(p))
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

// verifyErr wraps verification failures of layer diffID in a *VerificationError.
func verifyErr(e *Error, diffID DiffID) error {
	if e.Code != CodeDigest && e.Code != CodeCorrupt {
		return e
	}
	if e.DiffID == "" {
		e.DiffID = diffID
	}
	return &VerificationError{DiffID: e.DiffID, Path: e.Path, Err: e}
}
