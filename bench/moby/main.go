// SPDX-License-Identifier: Apache-2.0

// Command mobybench is the Docker engine baseline of bench/run.sh: the engine's own `layer`
// package (github.com/docker/docker/layer, v28.5.2, the last release that publishes it as an
// importable package) on the `vfs` graph driver, doing what librolayer's register and export
// do, plus tar-split's record size for the same tar.
//
//	mobybench register -root DIR -tar FILE   layer.Store.Register(tar, "") on a fresh store
//	mobybench export   -root DIR -chain ID   layer.Store.Get(ID).TarStream() -> io.Discard
//	mobybench tarsplit -tar FILE             tar-split's gzipped JSON (what the engine stores)
//
// Each prints one line of JSON with the in-process time of the operation. Peak RSS and CPU
// are taken by the caller (bench/run.sh runs every operation in its own process).
package main

import (
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	_ "github.com/docker/docker/daemon/graphdriver/vfs" // registers the "vfs" driver
	"github.com/docker/docker/layer"
	"github.com/moby/sys/reexec"
	"github.com/moby/sys/user"
	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
)

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mobybench: "+format+"\n", args...)
	os.Exit(1)
}

func emit(m map[string]any) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		m["maxrss_kib"] = ru.Maxrss
	}
	b, _ := json.Marshal(m)
	fmt.Println(string(b))
}

func openStore(root string) layer.Store {
	ls, err := layer.NewStoreFromOptions(layer.StoreOptions{
		Root:        root,
		GraphDriver: "vfs",
		IDMapping:   user.IdentityMapping{},
	})
	if err != nil {
		die("open store: %v", err)
	}
	return ls
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func main() {
	// The graph-driver archive code may re-execute this binary for chrooted helpers.
	if reexec.Init() {
		return
	}
	if len(os.Args) < 2 {
		die("usage: mobybench register|export|tarsplit [flags]")
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	root := fs.String("root", "", "store root (fresh directory for register)")
	tarPath := fs.String("tar", "", "uncompressed layer tar")
	chain := fs.String("chain", "", "ChainID to export")
	_ = fs.Parse(os.Args[2:])

	switch cmd {
	case "register":
		if *root == "" || *tarPath == "" {
			die("register needs -root and -tar")
		}
		t0 := time.Now()
		ls := openStore(*root)
		f, err := os.Open(*tarPath)
		if err != nil {
			die("%v", err)
		}
		t1 := time.Now()
		l, err := ls.Register(f, "")
		if err != nil {
			die("register: %v", err)
		}
		t2 := time.Now()
		f.Close()
		cid := l.ChainID()
		ts := filepath.Join(*root, "image", "vfs", "layerdb", "sha256",
			strings.TrimPrefix(string(cid), "sha256:"), "tar-split.json.gz")
		var tsSize int64 = -1
		if st, err := os.Stat(ts); err == nil {
			tsSize = st.Size()
		}
		ds := l.DiffSize()
		// No Release: the layer stays in the store's layerdb for the export run.
		emit(map[string]any{
			"op": "register", "impl": "moby-vfs", "seconds": t2.Sub(t1).Seconds(),
			"open_seconds": t1.Sub(t0).Seconds(), "chain_id": string(cid),
			"diff_id": string(l.DiffID()), "diff_size": ds, "tar_split_gz_bytes": tsSize,
		})
	case "export":
		if *root == "" || *chain == "" {
			die("export needs -root and -chain")
		}
		t0 := time.Now()
		ls := openStore(*root)
		l, err := ls.Get(layer.ChainID(digest.Digest(*chain)))
		if err != nil {
			die("get: %v", err)
		}
		t1 := time.Now()
		rc, err := l.TarStream()
		if err != nil {
			die("tar stream: %v", err)
		}
		n, err := io.Copy(io.Discard, rc)
		if err != nil {
			die("read tar stream: %v", err)
		}
		if err := rc.Close(); err != nil {
			die("close tar stream: %v", err)
		}
		t2 := time.Now()
		emit(map[string]any{
			"op": "export", "impl": "moby-vfs", "seconds": t2.Sub(t1).Seconds(),
			"open_seconds": t1.Sub(t0).Seconds(), "bytes": n,
		})
	case "tarsplit":
		if *tarPath == "" {
			die("tarsplit needs -tar")
		}
		f, err := os.Open(*tarPath)
		if err != nil {
			die("%v", err)
		}
		defer f.Close()
		t0 := time.Now()
		var cw countingWriter
		gz := gzip.NewWriter(&cw) // as the engine's TarSplitWriter(true) does
		its, err := asm.NewInputTarStream(f, storage.NewJSONPacker(gz), storage.NewDiscardFilePutter())
		if err != nil {
			die("tar-split: %v", err)
		}
		n, err := io.Copy(io.Discard, its)
		if err != nil {
			die("tar-split: %v", err)
		}
		if err := gz.Close(); err != nil {
			die("gzip: %v", err)
		}
		emit(map[string]any{
			"op": "tarsplit", "seconds": time.Since(t0).Seconds(), "bytes": n,
			"tar_split_gz_bytes": cw.n,
		})
	default:
		die("unknown command %q", cmd)
	}
}
