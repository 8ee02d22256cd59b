// SPDX-License-Identifier: Apache-2.0

//go:build !cgo

package docker

// Like package rolayer, this package needs cgo: importing rolayer stops a !cgo build with its
// message saying what to do (see ../nocgo.go).
import _ "github.com/librolayer/rolayer/bindings/go"
