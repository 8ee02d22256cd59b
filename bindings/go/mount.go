// SPDX-License-Identifier: Apache-2.0

package rolayer

/*
#include <stdlib.h>
#include <rolayer.h>
*/
import "C"

import "unsafe"

// Mount flags for Store.Mount (the mount is always read-only).
const (
	MountNoSuid = uint(C.ROLAYER_MOUNT_NOSUID)
	MountNoDev  = uint(C.ROLAYER_MOUNT_NODEV)
	MountNoExec = uint(C.ROLAYER_MOUNT_NOEXEC)
)

func stringList(l *C.rolayer_string_list) []string {
	if l == nil {
		return nil
	}
	defer C.rolayer_string_list_free(l)
	n := int(C.rolayer_string_list_count(l))
	out := make([]string, n)
	for i := 0; i < n; i++ {
		out[i] = C.GoString(C.rolayer_string_list_get(l, C.size_t(i)))
	}
	return out
}

// LowerDirs returns the overlayfs lower directories of id's flattened chain, topmost first,
// for a caller that mounts itself, and whether the mount needs the "userxattr" option. Only
// stores of the "dir" driver (ErrUnsupported otherwise). See docs/mount.md.
func (s *Store) LowerDirs(id ChainID) ([]string, bool, error) {
	cid := C.CString(string(id))
	defer C.free(unsafe.Pointer(cid))
	if !s.gate.enter() {
		return nil, false, errClosed("store")
	}
	defer s.gate.exit()
	var l *C.rolayer_string_list
	var ux C.int
	var cerr *C.rolayer_error
	if rc := C.rolayer_mount_lower_dirs(&l, s.c, cid, &ux, &cerr); rc != 0 {
		return nil, false, fromC(rc, cerr)
	}
	return stringList(l), ux != 0, nil
}

// Mount mounts id's flattened chain read-only at target (an existing directory) with
// overlayfs and holds the layer until Unmount (from any process). flags: MountNoSuid, ...
func (s *Store) Mount(id ChainID, target string, flags uint) error {
	cid := C.CString(string(id))
	defer C.free(unsafe.Pointer(cid))
	ct := C.CString(target)
	defer C.free(unsafe.Pointer(ct))
	if !s.gate.enter() {
		return errClosed("store")
	}
	defer s.gate.exit()
	var cerr *C.rolayer_error
	if rc := C.rolayer_mount(s.c, cid, ct, C.uint(flags), &cerr); rc != 0 {
		return fromC(rc, cerr)
	}
	return nil
}

// Unmount unmounts a mount made by Mount at target and drops its hold.
func (s *Store) Unmount(target string) error {
	ct := C.CString(target)
	defer C.free(unsafe.Pointer(ct))
	if !s.gate.enter() {
		return errClosed("store")
	}
	defer s.gate.exit()
	var cerr *C.rolayer_error
	if rc := C.rolayer_umount(s.c, ct, &cerr); rc != 0 {
		return fromC(rc, cerr)
	}
	return nil
}
