// SPDX-License-Identifier: Apache-2.0

package rolayer

/*
#cgo pkg-config: rolayer
#include <stdlib.h>
#include <rolayer.h>

static int rl_store_open(rolayer_store **out, const char *root, const char *driver, int busy_ms,
                         int read_only, int64_t pack_max, rolayer_error **err) {
	rolayer_store_options o = ROLAYER_STORE_OPTIONS_INIT;
	o.driver = driver;
	o.busy_timeout_ms = busy_ms;
	o.read_only = read_only;
	o.payload_pack_max = pack_max;
	return rolayer_store_open_ext(out, root, &o, err);
}
*/
import "C"

import (
	"io"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// MaxDepth is the longest chain a layer can be on (a base layer has depth 1), as in the Docker
// engine: registering on a parent of this depth fails with ErrMaxDepthExceeded.
const MaxDepth = C.ROLAYER_MAX_DEPTH

// Version is the version of the loaded library ("MAJOR.MINOR.PATCH").
func Version() string { return C.GoString(C.rolayer_version_string()) }

// HeaderVersion is the version of the headers this package was compiled against.
const HeaderVersion = C.ROLAYER_VERSION_STRING

// Options for Open. The zero value (or nil) opens with the library's defaults.
type Options struct {
	// Driver is the built-in driver: "dir" or "exact"; empty = the driver the store was
	// created with, or "dir" for a new store. A store can only be reopened with the driver it
	// was created with.
	Driver string
	// CustomDriver is a driver written in Go, used instead of a built-in one (Driver must then
	// be empty). See Driver. The store calls it until Close; a store created with it can only
	// be reopened with a driver of the same Name.
	CustomDriver Driver
	// BusyTimeout is how long a call waits for another writer's short lock on the store (a
	// database transaction of another process or another Store on the same root; 0 = the
	// library's default, 5 s; negative = fail at once with ErrBusy).
	BusyTimeout time.Duration
	// ReadOnly opens the store for listing, opening, exporting and verifying only: every write
	// fails with ErrIO (Errno EROFS) and nothing in the store changes. A store on a read-only
	// file system is opened this way anyway.
	ReadOnly bool
	// PayloadPackMax sets the "dir" driver's payload pack (docs/store.md): > 0 = layers
	// registered from now on also keep the payloads of their regular files of 1 to this many
	// bytes (at most 16 MiB) in one pack file, which exports read instead of one file per
	// payload (those bytes are stored twice); < 0 = no pack for new layers; 0 = the store's
	// setting as it is. The setting is kept in the store for later opens and other processes.
	// Above 16 MiB: ErrInvalid; a change on a ReadOnly open: ErrIO. Other drivers ignore it.
	PayloadPackMax int64
}

// Store is an open layer store, shaped like the Docker engine's layer.Store.
//
// A Store is safe for concurrent use by many goroutines. Layers returned by Register and Get
// are references that must be given back with Release; Layers returned by Map and
// Layer.Parent are descriptions that hold no reference (see Map).
type Store struct {
	c      *C.rolayer_store
	root   string
	driver string

	gate gate

	ops *C.rolayer_driver_ops // a CustomDriver's ops, freed by Close

	// The C handles alive in this store, freed by Close after the store itself.
	trackMu sync.Mutex
	handles map[*C.rolayer_layer]struct{}
	streams map[*C.rolayer_tar_stream]struct{}

	// refMu: every call that can drop a C reference (release, unretain, stream free, pins) holds
	// it for writing, the short looks of descriptions for reading (see pins.go).
	refMu sync.RWMutex
	pins  map[ChainID]*pin

	// What each ChainID seen so far is (immutable for a ChainID); a cache: entries of deleted
	// layers are evicted, so a miss is always possible.
	infoMu sync.RWMutex
	info   map[ChainID]*layerInfo

	closeOnce sync.Once
}

// Open opens (creating it if needed) the store rooted at directory root. A root may be opened
// any number of times, by this process and others, at once (docs/threading.md, "Processes"):
// each Store sees the others' registers as soon as they commit, and a layer any of them holds
// is not deleted under it. It fails with ErrBusy only when another writer keeps the store's
// database locked longer than BusyTimeout, and with ErrInvalid when the store was created with
// another driver or the driver name is unknown. With Options.CustomDriver, the driver's Close
// (if it has one) is called when Open fails, else at the end of Store.Close.
func Open(root string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	croot := C.CString(root)
	defer C.free(unsafe.Pointer(croot))
	var cdriver *C.char
	if o.Driver != "" {
		cdriver = C.CString(o.Driver)
		defer C.free(unsafe.Pointer(cdriver))
	}
	busy := C.int(0)
	switch {
	case o.BusyTimeout < 0:
		busy = -1
	case o.BusyTimeout > 0:
		ms := o.BusyTimeout.Milliseconds()
		if ms < 1 {
			ms = 1
		}
		if ms > 1<<31-1 {
			ms = 1<<31 - 1
		}
		busy = C.int(ms)
	}
	ro := C.int(0)
	if o.ReadOnly {
		ro = 1
	}
	var out *C.rolayer_store
	var ops *C.rolayer_driver_ops
	if o.CustomDriver != nil {
		if o.Driver != "" {
			closeDriver(o.CustomDriver)
			return nil, &Error{Code: CodeInvalid, Message: "rolayer: Options.Driver and Options.CustomDriver are exclusive"}
		}
		var err error
		if out, ops, err = openCustom(croot, o.CustomDriver, busy, ro); err != nil {
			return nil, err
		}
	} else {
		var cerr *C.rolayer_error
		if rc := C.rl_store_open(&out, croot, cdriver, busy, ro, C.int64_t(o.PayloadPackMax), &cerr); rc != 0 {
			return nil, fromC(rc, cerr)
		}
	}
	s := &Store{
		c:       out,
		ops:     ops,
		root:    C.GoString(C.rolayer_store_root(out)),
		driver:  C.GoString(C.rolayer_store_driver(out)),
		handles: make(map[*C.rolayer_layer]struct{}),
		streams: make(map[*C.rolayer_tar_stream]struct{}),
		pins:    make(map[ChainID]*pin),
		info:    make(map[ChainID]*layerInfo),
	}
	s.gate.init()
	runtime.SetFinalizer(s, func(s *Store) { s.Close() })
	return s, nil
}

// Root is the store's root directory.
func (s *Store) Root() string { return s.root }

// DriverName is the name of the store's driver ("dir", "exact", or a CustomDriver's Name).
func (s *Store) DriverName() string { return s.driver }

// PayloadPackMax is the payload-pack threshold in bytes this Store applies new layers with
// (Options.PayloadPackMax, as kept in the store when it was opened; 0 = no pack).
func (s *Store) PayloadPackMax() int64 {
	if !s.gate.enter() {
		return 0
	}
	defer s.gate.exit()
	return int64(C.rolayer_store_payload_pack_max(s.c))
}

// Close closes the store. It waits for calls in progress (a Register still reading its input, a
// Verify, a stream Read) to return, then frees the store; Layers and streams still open become
// unusable (their calls fail with ErrClosed) and their C handles are freed. Closing deletes
// nothing: what was registered stays on disk, and a later Open sees it (with no references but
// the persistent ones of Retain). Close is idempotent and always returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.gate.close()
		runtime.SetFinalizer(s, nil)
		C.rolayer_store_free(s.c)
		// Handles that outlive their store are closed after it (closing deletes nothing, and
		// after the store is freed nothing on disk changes anyway).
		s.trackMu.Lock()
		for st := range s.streams {
			C.rolayer_tar_stream_free(st)
		}
		for h := range s.handles {
			C.rolayer_layer_close(h)
		}
		s.streams, s.handles = nil, nil
		s.trackMu.Unlock()
		s.refMu.Lock()
		for _, p := range s.pins {
			C.rolayer_layer_close(p.h)
		}
		s.pins = nil
		s.refMu.Unlock()
		// A CustomDriver is destroyed (its Close called) with the last handle above.
		freeOps(s.ops)
		s.ops = nil
		runtime.KeepAlive(s)
	})
	return nil
}

// Cleanup is Close, under the Docker engine's name.
func (s *Store) Cleanup() error { return s.Close() }

// Register registers a layer from an uncompressed tar stream on top of parent ("" for a base
// layer), as the Docker engine's Store.Register does; see RegisterWithDescriptor.
func (s *Store) Register(ts io.Reader, parent ChainID) (Layer, error) {
	return s.RegisterWithDescriptor(ts, parent, Descriptor{})
}

// Get returns a new reference to the layer id, to be given back with Release.
// ErrLayerDoesNotExist if there is none, ErrInvalid for a malformed ChainID.
func (s *Store) Get(id ChainID) (Layer, error) {
	cid := C.CString(string(id))
	defer C.free(unsafe.Pointer(cid))
	if !s.gate.enter() {
		return nil, errClosed("store")
	}
	defer s.gate.exit()
	var out *C.rolayer_layer
	var cerr *C.rolayer_error
	if rc := C.rolayer_open(&out, s.c, cid, &cerr); rc != 0 {
		return nil, fromC(rc, cerr)
	}
	return s.newRef(out), nil
}

// Release gives back a reference obtained from Register or Get. When it was the last reference
// of any kind (references, child layers, persistent references of Retain), the layer is deleted
// and its parent released in turn; the deleted layers are returned, child first.
//
// Releasing a reference twice, or a Layer that is not a reference of this store (one from Map
// or Parent), returns ErrLayerNotRetained.
func (s *Store) Release(l Layer) ([]Metadata, error) {
	r, ok := l.(*layerRef)
	if !ok || r.s != s {
		var id ChainID
		if l != nil {
			id = l.ChainID()
		}
		return nil, &Error{Code: CodeNotRetained, Message: "layer not retained: " + string(id)}
	}
	return r.release()
}

// CloseLayer gives up a reference obtained from Register or Get without deleting anything, as
// the garbage collector's finalizer would, but now: the layer stays in the store (as after a
// restart) until a Release of a reference in its chain or an Unretain deletes it. For readers
// that look at layers without owning them. Dropping a reference (letting it be collected) is
// the same: only Release and Unretain delete.
//
// Closing a reference twice, one already released, or a Layer that is not a reference of this
// store returns ErrLayerNotRetained.
func (s *Store) CloseLayer(l Layer) error {
	r, ok := l.(*layerRef)
	if !ok || r.s != s {
		var id ChainID
		if l != nil {
			id = l.ChainID()
		}
		return &Error{Code: CodeNotRetained, Message: "layer not retained: " + string(id)}
	}
	return r.close()
}

// Map returns every layer of the store, by ChainID.
//
// The Layers are descriptions, not references (as in the Docker engine, whose Map layers need no
// Release): they never need Release (Release returns ErrLayerNotRetained) and they do not keep
// a layer from being deleted when its last reference is released. Their getters work at any
// time; TarStream, TarStreamFrom, Metadata and Verify work while the layer exists and fail with
// ErrLayerDoesNotExist after it was deleted. Map returns an empty map on a closed store.
func (s *Store) Map() map[ChainID]Layer {
	out := make(map[ChainID]Layer)
	infos, err := s.layers()
	if err != nil {
		return out
	}
	for _, in := range infos {
		out[in.chainID] = &layerView{layerBase{s: s, info: in}}
	}
	return out
}

// layers describes every layer of the store from one read of its database
// (rolayer_store_layers: no handle per layer), and remembers what it read.
func (s *Store) layers() ([]*layerInfo, error) {
	if !s.gate.enter() {
		return nil, errClosed("store")
	}
	defer s.gate.exit()
	var l *C.rolayer_layer_list
	var cerr *C.rolayer_error
	if rc := C.rolayer_store_layers(&l, s.c, &cerr); rc != 0 {
		return nil, fromC(rc, cerr)
	}
	defer C.rolayer_layer_list_free(l)
	n := int(C.rolayer_layer_list_count(l))
	infos := make([]*layerInfo, 0, n)
	s.infoMu.Lock()
	defer s.infoMu.Unlock()
	for i := 0; i < n; i++ {
		ci := C.size_t(i)
		id := ChainID(C.GoString(C.rolayer_layer_list_chain_id(l, ci)))
		if in, ok := s.info[id]; ok && in != nil {
			infos = append(infos, in) // immutable for a ChainID: keep the one already shared
			continue
		}
		in := &layerInfo{
			chainID:    id,
			diffID:     DiffID(C.GoString(C.rolayer_layer_list_diff_id(l, ci))),
			depth:      int(C.rolayer_layer_list_depth(l, ci)),
			size:       int64(C.rolayer_layer_list_size(l, ci)),
			diffSize:   int64(C.rolayer_layer_list_diff_size(l, ci)),
			streamSize: int64(C.rolayer_layer_list_stream_size(l, ci)),
			cacheID:    C.GoString(C.rolayer_layer_list_cache_id(l, ci)),
		}
		if p := C.rolayer_layer_list_parent(l, ci); p != nil {
			in.parent = ChainID(C.GoString(p))
		}
		if p := C.rolayer_layer_list_descriptor_media_type(l, ci); p != nil {
			in.desc.MediaType = C.GoString(p)
		}
		if p := C.rolayer_layer_list_descriptor_digest(l, ci); p != nil {
			in.desc.Digest = digestOf(C.GoString(p))
		}
		in.desc.Size = int64(C.rolayer_layer_list_descriptor_size(l, ci))
		s.info[id] = in
		infos = append(infos, in)
	}
	return infos, nil
}

func (s *Store) list() ([]ChainID, error) {
	if !s.gate.enter() {
		return nil, errClosed("store")
	}
	defer s.gate.exit()
	var l *C.rolayer_string_list
	var cerr *C.rolayer_error
	if rc := C.rolayer_store_list(&l, s.c, &cerr); rc != 0 {
		return nil, fromC(rc, cerr)
	}
	defer C.rolayer_string_list_free(l)
	n := int(C.rolayer_string_list_count(l))
	ids := make([]ChainID, 0, n)
	for i := 0; i < n; i++ {
		ids = append(ids, ChainID(C.GoString(C.rolayer_string_list_get(l, C.size_t(i)))))
	}
	return ids, nil
}

// Retain adds a persistent reference to layer id, kept in the store's database across Close
// and other processes (what keeps a layer when nothing holds a reference to it). Each Retain is
// undone by one Unretain.
func (s *Store) Retain(id ChainID) error {
	cid := C.CString(string(id))
	defer C.free(unsafe.Pointer(cid))
	if !s.gate.enter() {
		return errClosed("store")
	}
	defer s.gate.exit()
	var cerr *C.rolayer_error
	if rc := C.rolayer_store_retain(s.c, cid, &cerr); rc != 0 {
		return fromC(rc, cerr)
	}
	return nil
}

// Unretain drops one persistent reference of layer id; when it was the last reference of any
// kind, the layer is deleted as by Release, and the deleted layers are returned child first.
// ErrLayerNotRetained when id has no persistent reference.
func (s *Store) Unretain(id ChainID) ([]Metadata, error) {
	cid := C.CString(string(id))
	defer C.free(unsafe.Pointer(cid))
	if !s.gate.enter() {
		return nil, errClosed("store")
	}
	defer s.gate.exit()
	s.refMu.Lock()
	defer s.refMu.Unlock()
	if len(s.pins) > 0 {
		var n C.int64_t
		if C.rolayer_store_retained(&n, s.c, cid, nil) == 0 && n > 0 {
			// id has a persistent reference: the pins of its chain can go (see pins.go).
			if parent, ok := s.parentLocked(id); ok {
				s.dropChainPinsLocked(id, parent)
			}
		}
	}
	var removed *C.rolayer_removed
	var cerr *C.rolayer_error
	rc := C.rolayer_store_unretain(&removed, s.c, cid, &cerr)
	if rc != 0 {
		return nil, fromC(rc, cerr)
	}
	return s.removedList(removed), nil
}

// Retained returns the number of persistent references of layer id.
func (s *Store) Retained(id ChainID) (int64, error) {
	cid := C.CString(string(id))
	defer C.free(unsafe.Pointer(cid))
	if !s.gate.enter() {
		return 0, errClosed("store")
	}
	defer s.gate.exit()
	var n C.int64_t
	var cerr *C.rolayer_error
	if rc := C.rolayer_store_retained(&n, s.c, cid, &cerr); rc != 0 {
		return 0, fromC(rc, cerr)
	}
	return int64(n), nil
}

// GC collects what nothing keeps: the holds, temporary files and intent marks of processes
// that died with the store open, and every layer without a persistent reference (Retain), a
// child, or a reference, description stream or handle open in any live process (a layer
// registered by a process killed before it retained it, or registered and never released
// before the store was closed). Layers this Store or another live process still holds are never
// touched. It returns the deleted layers, child first (empty when nothing was deleted).
// Errors: ErrIO with Errno EROFS on a read-only store, ErrBusy when another writer kept the
// store locked longer than BusyTimeout, ErrClosed after Close. Several processes may run it at
// once.
func (s *Store) GC() ([]Metadata, error) {
	if !s.gate.enter() {
		return nil, errClosed("store")
	}
	defer s.gate.exit()
	// Like a release, GC drops C references: no look may overlap it (see pins.go).
	s.refMu.Lock()
	defer s.refMu.Unlock()
	var removed *C.rolayer_removed
	var cerr *C.rolayer_error
	if rc := C.rolayer_store_gc(&removed, s.c, &cerr); rc != 0 {
		return nil, fromC(rc, cerr)
	}
	return s.removedList(removed), nil
}

// removedList converts and frees a deleted-layer report, forgetting the deleted layers.
func (s *Store) removedList(r *C.rolayer_removed) []Metadata {
	if r == nil {
		return nil
	}
	defer C.rolayer_removed_free(r)
	n := int(C.rolayer_removed_count(r))
	if n == 0 {
		return nil
	}
	out := make([]Metadata, n)
	for i := range out {
		ci := C.size_t(i)
		out[i] = Metadata{
			ChainID:  ChainID(C.GoString(C.rolayer_removed_chain_id(r, ci))),
			DiffID:   DiffID(C.GoString(C.rolayer_removed_diff_id(r, ci))),
			Size:     int64(C.rolayer_removed_size(r, ci)),
			DiffSize: int64(C.rolayer_removed_diff_size(r, ci)),
		}
	}
	s.infoMu.Lock()
	for _, m := range out {
		delete(s.info, m.ChainID)
	}
	s.infoMu.Unlock()
	return out
}

func (s *Store) track(h *C.rolayer_layer) {
	s.trackMu.Lock()
	s.handles[h] = struct{}{}
	s.trackMu.Unlock()
}

func (s *Store) untrack(h *C.rolayer_layer) {
	s.trackMu.Lock()
	delete(s.handles, h)
	s.trackMu.Unlock()
}

func (s *Store) trackStream(h *C.rolayer_tar_stream) {
	s.trackMu.Lock()
	s.streams[h] = struct{}{}
	s.trackMu.Unlock()
}

func (s *Store) untrackStream(h *C.rolayer_tar_stream) {
	s.trackMu.Lock()
	delete(s.streams, h)
	s.trackMu.Unlock()
}

// gate counts the calls into the C library that are in progress, so that Close can wait for
// them and later calls fail with ErrClosed instead of touching freed handles. Unlike a RWMutex
// it never blocks a call: a call made while Close waits (e.g. a Register's reader reading a
// stream of the same store) fails at once rather than deadlocking.
type gate struct {
	mu     sync.Mutex
	cond   sync.Cond
	n      int
	closed bool
}

func (g *gate) init() { g.cond.L = &g.mu }

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *gate) exit() {
	g.mu.Lock()
	g.n--
	if g.n == 0 && g.closed {
		g.cond.Broadcast()
	}
	g.mu.Unlock()
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	for g.n > 0 {
		g.cond.Wait()
	}
	g.mu.Unlock()
}
