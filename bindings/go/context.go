// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"context"
	"io"
	"sync"
)

// RegisterContext is Register with a context. See RegisterWithDescriptorContext.
func (s *Store) RegisterContext(ctx context.Context, ts io.Reader, parent ChainID) (Layer, error) {
	return s.RegisterWithDescriptorContext(ctx, ts, parent, Descriptor{})
}

// RegisterWithDescriptorContext is RegisterWithDescriptor with a context: the context is
// checked before every Read of ts (in the library's read callback), and once it is done the
// callback aborts the registration (the library's callback-aborted status): the library cleans
// up and leaves nothing behind, and the returned *Error (CodeCallback) wraps ctx.Err(), so
// errors.Is(err, context.Canceled) or context.DeadlineExceeded holds.
//
// A Read already blocked is not interrupted: give a reader that honours the same context (an
// HTTP response body of a request made with it, say) to stop waiting at once.
func (s *Store) RegisterWithDescriptorContext(ctx context.Context, ts io.Reader, parent ChainID, desc Descriptor) (Layer, error) {
	if ctx == nil {
		return nil, &Error{Code: CodeInvalid, Message: "rolayer: RegisterContext needs a context"}
	}
	if ts == nil {
		return nil, &Error{Code: CodeInvalid, Message: "rolayer: Register needs a reader"}
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Code: CodeCallback, Message: "rolayer: registration cancelled: " + err.Error(), Err: err}
	}
	l, err := s.RegisterWithDescriptor(&ctxReader{ctx: ctx, r: ts}, parent, desc)
	if e, ok := err.(*Error); ok && e.Code == CodeCallback && e.Err != nil && e.Err == ctx.Err() {
		e.Message = "rolayer: registration cancelled: " + e.Err.Error()
	}
	return l, err
}

// TarStreamContext is l.TarStream with a context, for exports: every Read checks the context
// first and fails with ctx.Err() once it is done (the C stream is read in pieces of up to
// 1 MiB, so cancellation takes effect within one piece). Close the stream as usual; closing
// deletes nothing.
func TarStreamContext(ctx context.Context, l Layer) (io.ReadCloser, error) {
	if ctx == nil || l == nil {
		return nil, &Error{Code: CodeInvalid, Message: "rolayer: TarStreamContext needs a context and a layer"}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rc, err := l.TarStream()
	if err != nil {
		return nil, err
	}
	return &ctxReadCloser{ctxReader: ctxReader{ctx: ctx, r: rc}, c: rc}, nil
}

// ExportContext writes l's verified tar stream to w, stopping with ctx.Err() once the context
// is done (checked between reads of up to 1 MiB). It returns the bytes written; a stream that
// does not match its DiffID is a *VerificationError, as with TarStream.
func ExportContext(ctx context.Context, l Layer, w io.Writer) (int64, error) {
	rc, err := TarStreamContext(ctx, l)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	// Read through the context-checking reader (io.CopyBuffer would use the inner stream's
	// WriteTo and skip the checks).
	return io.CopyBuffer(onlyWriter{w}, onlyReader{rc}, *buf)
}

// VerifyContext is l.Verify with a context: it reads the whole verified stream and discards it,
// checking the context between reads of up to 1 MiB. nil when the stream matches its DiffID, a
// *VerificationError when it does not, ctx.Err() when the context was done first.
func VerifyContext(ctx context.Context, l Layer) error {
	_, err := ExportContext(ctx, l, io.Discard)
	return err
}

// ctxReader checks its context before every Read.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

type ctxReadCloser struct {
	ctxReader
	c    io.Closer
	once sync.Once
	err  error
}

func (c *ctxReadCloser) Close() error {
	c.once.Do(func() { c.err = c.c.Close() })
	return c.err
}

// onlyReader and onlyWriter hide ReadFrom/WriteTo from io.Copy.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }
