// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer_test

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"os"

	rolayer "github.com/librolayer/rolayer/bindings/go"
)

func Example() {
	dir, _ := os.MkdirTemp("", "rolayer-example")
	defer os.RemoveAll(dir)

	store, err := rolayer.Open(dir, &rolayer.Options{Driver: "exact"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	layer, err := store.Register(bytes.NewReader(make([]byte, 1024)), "") // the empty layer
	if err != nil {
		log.Fatal(err)
	}
	defer store.Release(layer)

	rc, _ := layer.TarStream() // verified against the DiffID as it is read
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	fmt.Println(layer.ChainID(), n, err)
	// Output: sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef 1024 <nil>
}
