// SPDX-License-Identifier: Apache-2.0

//go:build cgo

package rolayer_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"sync"

	rolayer "github.com/librolayer/rolayer/bindings/go"
)

// memory keeps each layer's tar and gives it back as the layer's diff against its parent.
type memory struct {
	mu     sync.Mutex
	tars   map[string][]byte
	parent map[string]string
}

func (m *memory) Name() string { return "memory" }

func (m *memory) Capabilities() rolayer.DriverCapabilities {
	return rolayer.DriverCapabilities{ExactDiffs: true}
}

func (m *memory) Create(id, parent string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tars[id], m.parent[id] = nil, parent
	return nil
}

func (m *memory) Remove(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.tars, id)
	delete(m.parent, id)
	return nil
}

func (m *memory) ApplyDiff(id, parent string, r io.Reader) (int64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tars[id] = b
	return int64(len(b)), nil
}

func (m *memory) Diff(id, ancestor string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ancestor != m.parent[id] {
		return nil, &rolayer.DriverError{Code: 2, Err: errors.New("only diffs against the parent")}
	}
	return io.NopCloser(bytes.NewReader(m.tars[id])), nil
}

func (m *memory) Payload(id, path string) (rolayer.PayloadReader, error) {
	return nil, errors.ErrUnsupported // never called: the diffs are exact
}

func (m *memory) Metadata(id string) (map[string]string, error) { return nil, nil }

func Example_driver() {
	dir, _ := os.MkdirTemp("", "rolayer-example")
	defer os.RemoveAll(dir)

	drv := &memory{tars: map[string][]byte{}, parent: map[string]string{}}
	store, err := rolayer.Open(dir, &rolayer.Options{CustomDriver: drv})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	layer, err := store.Register(bytes.NewReader(make([]byte, 1024)), "")
	if err != nil {
		log.Fatal(err)
	}
	rc, _ := layer.TarStream() // the driver's diff, verified against the DiffID
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	fmt.Println(store.DriverName(), layer.DiffID(), n, err)
	store.Release(layer)
	fmt.Println(len(drv.tars), "layers left in the driver")
	// Output:
	// memory sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef 1024 <nil>
	// 0 layers left in the driver
}
