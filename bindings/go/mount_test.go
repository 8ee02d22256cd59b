// SPDX-License-Identifier: Apache-2.0

package rolayer

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestLowerDirs(t *testing.T) {
	s := openStore(t, "dir")
	base := register(t, s, makeTar(t, file("a", "1"), file("b", "2")), "")
	top := register(t, s, makeTar(t, file(".wh.a", ""), file("c", "3")), base.ChainID())
	dirs, _, err := s.LowerDirs(top.ChainID())
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 2 || !strings.HasSuffix(dirs[0], "/diff") || dirs[0] == dirs[1] {
		t.Fatalf("lower dirs: %q", dirs)
	}
	// The top layer's directory is overlay-ready: the deletion of "a" is an object there.
	if _, err := os.Lstat(filepath.Join(dirs[0], "a")); err != nil {
		t.Fatalf("no whiteout object: %v", err)
	}
	one, _, err := s.LowerDirs(base.ChainID())
	if err != nil || len(one) != 2 || one[0] != dirs[1] {
		t.Fatalf("single layer: %q %v (want its dir and an empty one)", one, err)
	}
}

func TestMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting overlayfs needs root")
	}
	s := openStore(t, "dir")
	base := register(t, s, makeTar(t, file("a", "1"), file("b", "2")), "")
	top := register(t, s, makeTar(t, file(".wh.a", ""), file("c", "3")), base.ChainID())
	mnt := t.TempDir()
	if err := s.Mount(top.ChainID(), mnt, MountNoSuid); err != nil {
		if e, ok := err.(*Error); ok && (e.Errno == syscall.ENODEV || e.Code == CodeUnsupported) {
			t.Skipf("overlayfs unavailable: %v", err)
		}
		t.Fatal(err)
	}
	defer s.Unmount(mnt)
	if _, err := os.Stat(filepath.Join(mnt, "a")); !os.IsNotExist(err) {
		t.Fatalf("deleted file shows: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "c")); err != nil || string(b) != "3" {
		t.Fatalf("c: %q %v", b, err)
	}
	if err := s.Unmount(mnt); err != nil {
		t.Fatal(err)
	}
	if err := s.Unmount(mnt); codeOf(err) != CodeNotFound {
		t.Fatalf("second unmount: %v", err)
	}
}
