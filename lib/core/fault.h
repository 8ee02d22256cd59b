/* SPDX-License-Identifier: Apache-2.0 */
// Test-only fault points. In builds configured with -DROLAYER_FAULT_HOOKS=ON (the CI builds),
// named points in the store can kill the process or fail with an errno, driven by environment
// variables read once per process:
//   ROLAYER_FAULT_KILL=name[:N]        SIGKILL when point `name` is reached for the N-th time (default 1)
//   ROLAYER_FAULT_ERRNO=name[:N]=ERRNO throw an I/O error with that errno at the N-th time
// Without the option every point compiles to nothing.
#pragma once

namespace rolayer::fault {
void point(const char* name);
// A point standing for one system call whose failure the caller handles itself (instead of
// throwing): counts like point() and returns the errno of ROLAYER_FAULT_ERRNO at its N-th time
// (the caller then acts as if the call had failed with it), else 0.
int injected_errno(const char* name);
}

#ifdef ROLAYER_FAULT_HOOKS
#define ROLAYER_FAULT_POINT(name) ::rolayer::fault::point(name)
#define ROLAYER_FAULT_INJECTED_ERRNO(name) ::rolayer::fault::injected_errno(name)
#else
#define ROLAYER_FAULT_POINT(name) ((void)0)
#define ROLAYER_FAULT_INJECTED_ERRNO(name) 0
#endif
