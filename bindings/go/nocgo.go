// SPDX-License-Identifier: Apache-2.0

//go:build !cgo

package rolayer

// This package is a cgo binding of the C library librolayer: it cannot be built with
// CGO_ENABLED=0 (nor when cross-compiling without a C cross-compiler, where cgo is off by
// default). Without this file such a build would fail with errors about missing identifiers
// deep in the package; with it the build stops here, on the identifier below, which says what
// to do:
//
//	CGO_ENABLED=1 and a C compiler, and librolayer installed where pkg-config finds rolayer.pc
//	(PKG_CONFIG_PATH=<prefix>/lib/pkgconfig for a private prefix); see README.md.
var _ = rolayer_needs_cgo__build_with_CGO_ENABLED_1_a_C_compiler_and_librolayer_see_README
