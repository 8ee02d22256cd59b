// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// memDriver is an in-memory Driver, as tests/c/test_user_driver.c has in C. With exact set it
// keeps each applied stream whole and declares ExactDiffs; without, it keeps only the entries
// (headers and payloads, every occurrence of a path in stream order) and the store rebuilds
// exports from its own record and Payload.
type memDriver struct {
	name  string
	exact bool

	mu     sync.Mutex
	layers map[string]*memLayer
	trap   map[string]string // step -> "fail" or "panic"
	lie    bool              // Diff changes the first byte
	closed int
	opened int // diff streams and payloads open
}

type memLayer struct {
	parent  string
	raw     []byte     // exact: the stream as applied
	entries []memEntry // payload mode: every entry, in stream order
	bytes   int64
	// next is the index in entries just after the payload opened last: Payload looks for the
	// path from there on, then from the start (a new export). The C API does not say which
	// export an open belongs to, so concurrent exports of one layer with a duplicated path
	// could mix occurrences up (the store's verification would catch it).
	next int
}

type memEntry struct {
	hdr     tar.Header
	path    string
	data    []byte
	regular bool
}

func newMemDriver(exact bool) *memDriver {
	name := "go-memory"
	if exact {
		name = "go-memory-exact"
	}
	return &memDriver{name: name, exact: exact, layers: map[string]*memLayer{}, trap: map[string]string{}}
}

// The C test's codes and messages, step by step.
var memTraps = map[string]struct {
	code int
	msg  string
}{
	"create":       {5, "create refused by the test"},
	"remove":       {6, "remove refused by the test"},
	"apply":        {7, "disk full (test)"},
	"diff_open":    {8, "diff_open refused by the test"},
	"diff_read":    {10, "diff_read failed (test)"},
	"payload_open": {11, "payload_open refused by the test"},
	"payload_read": {13, "payload_read failed (test)"},
	"metadata":     {14, "metadata refused by the test"},
}

func (d *memDriver) set(step, mode string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if mode == "" {
		delete(d.trap, step)
	} else {
		d.trap[step] = mode
	}
}

// check fails or panics as the test asked for step.
func (d *memDriver) check(step string) error {
	d.mu.Lock()
	mode := d.trap[step]
	d.mu.Unlock()
	t := memTraps[step]
	switch mode {
	case "fail":
		return &DriverError{Code: t.code, Err: errors.New(t.msg)}
	case "panic":
		panic(step + " exploded")
	}
	return nil
}

func (d *memDriver) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.layers)
}

func (d *memDriver) openCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.opened
}

func (d *memDriver) Name() string { return d.name }

func (d *memDriver) Capabilities() DriverCapabilities { return DriverCapabilities{ExactDiffs: d.exact} }

func (d *memDriver) Create(id, parent string) error {
	if err := d.check("create"); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.layers[id]; ok {
		return fmt.Errorf("layer %s exists", id)
	}
	if parent != "" && d.layers[parent] == nil {
		return fmt.Errorf("no parent %s", parent)
	}
	d.layers[id] = &memLayer{parent: parent}
	return nil
}

func (d *memDriver) Remove(id string) error {
	if err := d.check("remove"); err != nil {
		return err
	}
	d.mu.Lock()
	delete(d.layers, id)
	d.mu.Unlock()
	return nil
}

func (d *memDriver) layer(id string) (*memLayer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.layers[id]
	if l == nil {
		return nil, fmt.Errorf("no such layer %s", id)
	}
	return l, nil
}

func cleanPath(name string) string { return strings.TrimPrefix(path.Clean("/"+name), "/") }

func (d *memDriver) ApplyDiff(id, parent string, diff io.Reader) (int64, error) {
	if _, err := d.layer(id); err != nil {
		return 0, err
	}
	// The trap fires once some input went through (as the C test's does after 512 bytes).
	var head bytes.Buffer
	if _, err := io.CopyN(&head, diff, 512); err != nil && err != io.EOF {
		return 0, err
	}
	if err := d.check("apply"); err != nil {
		return 0, err
	}
	in := io.MultiReader(&head, diff)
	if d.exact {
		raw, err := io.ReadAll(in)
		if err != nil {
			return 0, err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		l := d.layers[id]
		l.raw, l.bytes = raw, int64(len(raw))
		return l.bytes, nil
	}
	entries, n, err := readEntries(in)
	if err != nil {
		// The store checks the input too: if it finds it bad, this read fails and the store's
		// error is the one reported.
		if _, rerr := io.Copy(io.Discard, in); rerr != nil {
			return 0, rerr
		}
		return 0, err
	}
	if _, err := io.Copy(io.Discard, in); err != nil { // bytes after the end of the archive
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.layers[id]
	l.entries, l.bytes = entries, n
	return n, nil
}

// readEntries reads every entry of a tar, with the payloads of regular files.
func readEntries(r io.Reader) ([]memEntry, int64, error) {
	tr := tar.NewReader(r)
	var out []memEntry
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, total, nil
		}
		if err != nil {
			return nil, 0, err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, 0, err
		}
		e := memEntry{hdr: *h, path: cleanPath(h.Name), data: data}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
			e.regular = true
			total += int64(len(data))
		}
		out = append(out, e)
	}
}

// writeEntries writes entries back as a tar: a diff with the same contents, not the same bytes.
func writeEntries(entries []memEntry) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.hdr
		h.Format = tar.FormatUnknown
		if e.regular {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (d *memDriver) Diff(id, ancestor string) (io.ReadCloser, error) {
	if err := d.check("diff_open"); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.layers[id]
	if l == nil {
		return nil, fmt.Errorf("no such layer %s", id)
	}
	if ancestor != l.parent {
		return nil, &DriverError{Code: 2, Err: errors.New("only diffs against the parent")}
	}
	var data []byte
	if d.exact {
		data = bytes.Clone(l.raw)
		if d.lie && len(data) > 0 {
			data[0] ^= 1 // claims fidelity, changes a byte
		}
	} else {
		var err error
		if data, err = writeEntries(l.entries); err != nil {
			return nil, err
		}
	}
	d.opened++
	return &memStream{d: d, r: bytes.NewReader(data)}, nil
}

// memStream gives at most 1000 bytes a Read (the binding fills the library's buffer anyway).
type memStream struct {
	d   *memDriver
	r   *bytes.Reader
	pos int
}

func (s *memStream) Read(p []byte) (int, error) {
	if s.pos > 0 {
		if err := s.d.check("diff_read"); err != nil {
			return 0, err
		}
	}
	n, err := s.r.Read(p[:min(len(p), 1000)])
	s.pos += n
	return n, err
}

func (s *memStream) Close() error {
	s.d.mu.Lock()
	s.d.opened--
	s.d.mu.Unlock()
	return nil
}

func (d *memDriver) Payload(id, p string) (PayloadReader, error) {
	if err := d.check("payload_open"); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.layers[id]
	if l == nil {
		return nil, fmt.Errorf("no such layer %s", id)
	}
	find := func(from int) int {
		for i := from; i < len(l.entries); i++ {
			if l.entries[i].regular && l.entries[i].path == p {
				return i
			}
		}
		return -1
	}
	i := find(l.next)
	if i < 0 {
		i = find(0)
	}
	if i < 0 {
		return nil, &DriverError{Code: 12, Err: fmt.Errorf("no such file %q", p)}
	}
	l.next = i + 1
	d.opened++
	return &memPayload{d: d, r: bytes.NewReader(l.entries[i].data)}, nil
}

type memPayload struct {
	d *memDriver
	r *bytes.Reader
}

func (p *memPayload) ReadAt(b []byte, off int64) (int, error) {
	if err := p.d.check("payload_read"); err != nil {
		return 0, err
	}
	return p.r.ReadAt(b, off)
}

func (p *memPayload) Close() error {
	p.d.mu.Lock()
	p.d.opened--
	p.d.mu.Unlock()
	return nil
}

func (d *memDriver) Metadata(id string) (map[string]string, error) {
	if err := d.check("metadata"); err != nil {
		return nil, err
	}
	l, err := d.layer(id)
	if err != nil {
		return nil, err
	}
	return map[string]string{"kind": "memory", "bytes": strconv.FormatInt(l.bytes, 10)}, nil
}

func (d *memDriver) Close() error {
	d.mu.Lock()
	d.closed++
	d.mu.Unlock()
	return d.check("close")
}

// ---- tests ----------------------------------------------------------------------------

// driverModes runs f on an exact and a payload memDriver.
func driverModes(t *testing.T, f func(t *testing.T, d *memDriver)) {
	for _, exact := range []bool{true, false} {
		name := "payload"
		if exact {
			name = "exact"
		}
		t.Run(name, func(t *testing.T) { f(t, newMemDriver(exact)) })
	}
}

func openWithDriver(t testing.TB, root string, d Driver) *Store {
	t.Helper()
	s, err := Open(root, &Options{CustomDriver: d})
	if err != nil {
		t.Fatalf("Open with a Go driver: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorsDir, "data", name+".tar"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantCallbackError checks err is ErrCallback with the callback's code and message.
func wantCallbackError(t *testing.T, err error, code int, msg string) {
	t.Helper()
	var e *Error
	if !errors.Is(err, ErrCallback) || !errors.As(err, &e) {
		t.Fatalf("got %v, want ErrCallback", err)
	}
	if e.UserCode != code || !strings.Contains(e.Message, msg) {
		t.Errorf("got code %d %q, want %d and a message with %q", e.UserCode, e.Message, code, msg)
	}
}

// Every shared vector registers with the ids (or the error) of vectors.tsv and exports byte
// for byte through a Go driver, exact or not; releasing everything empties the driver.
func TestDriverVectors(t *testing.T) {
	vectors := loadVectors(t)
	driverModes(t, func(t *testing.T, d *memDriver) {
		s := openWithDriver(t, t.TempDir(), d)
		if s.DriverName() != d.name {
			t.Errorf("DriverName %q, want %q", s.DriverName(), d.name)
		}
		layers := map[string]Layer{}
		var order []Layer
		for _, v := range vectors {
			data, err := os.ReadFile(filepath.Join(vectorsDir, "data", v.input))
			if err != nil {
				t.Fatal(err)
			}
			var parent ChainID
			switch {
			case v.parent == "":
			case strings.HasPrefix(v.parent, "sha256:"):
				parent = ChainID(v.parent)
			default:
				parent = layers[v.parent].ChainID()
			}
			l, err := s.Register(bytes.NewReader(data), parent)
			if v.err != "" {
				if got := codeOf(err).String(); got != v.err {
					t.Errorf("%s: error %v (%s), want %s", v.name, err, got, v.err)
				}
				if err == nil {
					s.Release(l)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", v.name, err)
				continue
			}
			layers[v.name] = l
			order = append(order, l)
			if l.DiffID() != v.diffID || l.ChainID() != v.chainID {
				t.Errorf("%s: DiffID %s ChainID %s, want %s %s", v.name, l.DiffID(), l.ChainID(), v.diffID, v.chainID)
			}
			if got := export(t, l); !bytes.Equal(got, data) {
				t.Errorf("%s: exported %d bytes that differ from the %d registered", v.name, len(got), len(data))
			}
			if err := l.Verify(); err != nil {
				t.Errorf("%s: Verify: %v", v.name, err)
			}
			if m, err := l.Metadata(); err != nil || m["kind"] != "memory" || m["bytes"] == "" {
				t.Errorf("%s: Metadata %v, %v", v.name, m, err)
			}
			// A description (Map) exports through the driver too.
			if got := export(t, s.Map()[l.ChainID()]); !bytes.Equal(got, data) {
				t.Errorf("%s: export through Map differs", v.name)
			}
		}
		if n := d.openCount(); n != 0 {
			t.Errorf("%d diff streams or payloads left open", n)
		}
		if want := len(order); d.count() != want {
			t.Errorf("the driver holds %d layers, want %d (failed registrations leave nothing)", d.count(), want)
		}
		for i := len(order) - 1; i >= 0; i-- {
			release(t, s, order[i])
		}
		if len(s.Map()) != 0 || d.count() != 0 {
			t.Errorf("after releasing everything: %d layers in the store, %d in the driver", len(s.Map()), d.count())
		}
		s.Close()
		if d.closed != 1 {
			t.Errorf("the driver was closed %d times, want 1", d.closed)
		}
	})
}

// TarStreamFrom(parent) is the driver's diff: the registered bytes for an exact driver, the
// same files for the payload one.
func TestDriverTarStreamFrom(t *testing.T) {
	driverModes(t, func(t *testing.T, d *memDriver) {
		s := openWithDriver(t, t.TempDir(), d)
		base := register(t, s, readVector(t, "base"), "")
		childTar := readVector(t, "child")
		child := register(t, s, childTar, base.ChainID())
		rc, err := child.TarStreamFrom(base.ChainID())
		got := readAll(t, rc, err)
		if d.exact {
			if !bytes.Equal(got, childTar) {
				t.Error("the exact driver's diff differs from the registered stream")
			}
		} else {
			want, _, err1 := readEntries(bytes.NewReader(childTar))
			have, _, err2 := readEntries(bytes.NewReader(got))
			if err1 != nil || err2 != nil || len(want) != len(have) {
				t.Fatalf("diff: %v %v, %d entries, want %d", err1, err2, len(have), len(want))
			}
			for i := range want {
				if want[i].path != have[i].path || !bytes.Equal(want[i].data, have[i].data) {
					t.Errorf("entry %d: %s, want %s", i, have[i].path, want[i].path)
				}
			}
		}
		// The flattened chain is built by the store from the verified streams: the driver is
		// not asked (the memory driver only diffs against the parent).
		rc, err = child.TarStreamFrom("")
		if flat := readAll(t, rc, err); len(flat) == 0 {
			t.Error("empty flattened chain")
		}
		release(t, s, base)
		release(t, s, child)
	})
}

// A store reopened with the same driver finds its layers; another name is refused.
func TestDriverReopen(t *testing.T) {
	driverModes(t, func(t *testing.T, d *memDriver) {
		root := t.TempDir()
		data := readVector(t, "gnu-longname")
		s, err := Open(root, &Options{CustomDriver: d})
		if err != nil {
			t.Fatal(err)
		}
		l := register(t, s, data, "")
		id := l.ChainID()
		if err := s.Retain(id); err != nil {
			t.Fatal(err)
		}
		release(t, s, l)
		s.Close()
		if d.closed != 1 {
			t.Fatalf("Close: the driver was closed %d times", d.closed)
		}
		other := newMemDriver(d.exact)
		other.name = "another"
		if _, err := Open(root, &Options{CustomDriver: other}); !errors.Is(err, ErrInvalid) || other.closed != 1 {
			t.Errorf("reopening with another driver: %v (closed %d times)", err, other.closed)
		}
		s = openWithDriver(t, root, d)
		l, err = s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if got := export(t, l); !bytes.Equal(got, data) {
			t.Error("export after reopening differs")
		}
		release(t, s, l)
		if _, err := s.Unretain(id); err != nil || d.count() != 0 {
			t.Errorf("Unretain: %v, %d layers left in the driver", err, d.count())
		}
	})
}

// A driver that claims exact diffs and changes a byte is caught.
func TestDriverLyingIsCaught(t *testing.T) {
	d := newMemDriver(true)
	s := openWithDriver(t, t.TempDir(), d)
	data := readVector(t, "base")
	l := register(t, s, data, "")
	d.mu.Lock()
	d.lie = true
	d.mu.Unlock()
	rc, err := l.TarStream()
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	var ve *VerificationError
	if !errors.Is(err, ErrDigestMismatch) || !errors.As(err, &ve) || ve.DiffID != l.DiffID() {
		t.Errorf("export of a lying driver: %v", err)
	}
	if !strings.Contains(err.Error(), "could not verify layer data for: "+string(l.DiffID())) {
		t.Errorf("message %q", err)
	}
	if err := l.Verify(); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Verify: %v", err)
	}
	d.mu.Lock()
	d.lie = false
	d.mu.Unlock()
	if got := export(t, l); !bytes.Equal(got, data) {
		t.Error("export after the driver stopped lying differs")
	}
	release(t, s, l)
}

// Callbacks failing (mode "fail") or panicking (mode "panic") at each step: the operation fails
// with ErrCallback carrying the code and message, the store stays consistent, and everything
// works again once the driver recovers.
func TestDriverCallbackFailures(t *testing.T) {
	for _, mode := range []string{"fail", "panic"} {
		t.Run(mode, func(t *testing.T) {
			driverModes(t, func(t *testing.T, d *memDriver) {
				root := t.TempDir()
				s, err := Open(root, &Options{CustomDriver: d})
				if err != nil {
					t.Fatal(err)
				}
				defer func() { s.Close() }()
				data := readVector(t, "base")
				want := func(step string) (int, string) {
					if mode == "panic" {
						return DriverPanicCode, "panic: " + step + " exploded"
					}
					return memTraps[step].code, memTraps[step].msg
				}
				// Register fails at create and at apply: nothing stays.
				for _, step := range []string{"create", "apply"} {
					d.set(step, mode)
					_, err := s.Register(bytes.NewReader(data), "")
					code, msg := want(step)
					wantCallbackError(t, err, code, msg)
					d.set(step, "")
				}
				if len(s.Map()) != 0 || d.count() != 0 {
					t.Fatalf("a failed register left %d layers, %d in the driver", len(s.Map()), d.count())
				}
				// Export fails at each step it uses, then works again.
				l := register(t, s, data, "")
				steps := []string{"payload_open", "payload_read"}
				if d.exact {
					steps = []string{"diff_open", "diff_read"}
				}
				for _, step := range steps {
					d.set(step, mode)
					rc, err := l.TarStream()
					if err == nil {
						_, err = io.ReadAll(rc)
						rc.Close()
					}
					code, msg := want(step)
					wantCallbackError(t, err, code, msg)
					d.set(step, "")
					if got := export(t, l); !bytes.Equal(got, data) {
						t.Errorf("export after %s recovered differs", step)
					}
				}
				if n := d.openCount(); n != 0 {
					t.Errorf("%d diff streams or payloads left open", n)
				}
				d.set("metadata", mode)
				_, err = l.Metadata()
				code, msg := want("metadata")
				wantCallbackError(t, err, code, msg)
				d.set("metadata", "")
				// A failing remove: the layer leaves the store at once, its data at the next Open.
				d.set("remove", mode)
				release(t, s, l)
				if len(s.Map()) != 0 || d.count() != 1 {
					t.Errorf("after a failed remove: %d layers in the store, %d in the driver", len(s.Map()), d.count())
				}
				d.set("remove", "")
				s.Close()
				s = openWithDriver(t, root, d)
				if d.count() != 0 {
					t.Errorf("reopening left the orphan: %d layers in the driver", d.count())
				}
			})
		})
	}
}

// A driver's Close that panics does not take the program down; nor does a bad driver.
func TestDriverCloseAndBadDrivers(t *testing.T) {
	d := newMemDriver(true)
	d.set("close", "panic")
	s := openWithDriver(t, t.TempDir(), d)
	register(t, s, emptyTar, "")
	s.Close()
	if d.closed != 1 {
		t.Errorf("closed %d times", d.closed)
	}

	for _, name := range []string{"", "nul\x00name"} {
		bad := newMemDriver(false)
		bad.name = name
		if _, err := Open(t.TempDir(), &Options{CustomDriver: bad}); !errors.Is(err, ErrInvalid) || bad.closed != 1 {
			t.Errorf("driver named %q: %v (closed %d times)", name, err, bad.closed)
		}
	}
	both := newMemDriver(false)
	if _, err := Open(t.TempDir(), &Options{Driver: "dir", CustomDriver: both}); !errors.Is(err, ErrInvalid) || both.closed != 1 {
		t.Errorf("both Driver and CustomDriver: %v", err)
	}
}

// Many goroutines register, export and release through one Go driver at once (-race).
func TestDriverConcurrent(t *testing.T) {
	driverModes(t, func(t *testing.T, d *memDriver) {
		s := openWithDriver(t, t.TempDir(), d)
		base := register(t, s, readVector(t, "base"), "")
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for r := 0; r < 5; r++ {
					data := makeTar(t, file(fmt.Sprintf("w%d/r%d", w, r), strings.Repeat("z", 100*w+r)))
					l, err := s.Register(bytes.NewReader(data), base.ChainID())
					if err != nil {
						errs <- err
						return
					}
					rc, err := l.TarStream()
					if err == nil {
						var got []byte
						got, err = io.ReadAll(rc)
						rc.Close()
						if err == nil && !bytes.Equal(got, data) {
							err = errors.New("export differs")
						}
					}
					if err != nil {
						errs <- err
					}
					if _, err := s.Release(l); err != nil {
						errs <- err
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		release(t, s, base)
		if d.count() != 0 {
			t.Errorf("%d layers left in the driver", d.count())
		}
	})
}

// stashDriver reads ApplyDiff's input from another goroutine, and keeps the reader: using it
// after ApplyDiff returned is an error, not a call through a stale C pointer.
type stashDriver struct {
	*memDriver
	kept io.Reader
}

func (d *stashDriver) ApplyDiff(id, parent string, diff io.Reader) (int64, error) {
	d.kept = diff
	type result struct {
		n   int64
		err error
	}
	ch := make(chan result)
	go func() {
		n, err := d.memDriver.ApplyDiff(id, parent, diff)
		ch <- result{n, err}
	}()
	r := <-ch
	return r.n, r.err
}

func TestDriverApplyDiffReader(t *testing.T) {
	d := &stashDriver{memDriver: newMemDriver(true)}
	s := openWithDriver(t, t.TempDir(), d)
	// The child vector hard-links to a file of the base vector: registered on top of it (a
	// hard link whose target is in no layer is refused on every driver).
	base := register(t, s, readVector(t, "base"), "")
	data := readVector(t, "child")
	l := register(t, s, data, base.ChainID())
	if got := export(t, l); !bytes.Equal(got, data) {
		t.Error("export differs")
	}
	if n, err := d.kept.Read(make([]byte, 10)); n != 0 || err == nil || !strings.Contains(err.Error(), "after ApplyDiff returned") {
		t.Errorf("Read after ApplyDiff: %d, %v", n, err)
	}
	release(t, s, l)
	release(t, s, base)
}
