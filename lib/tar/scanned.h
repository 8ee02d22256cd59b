/* SPDX-License-Identifier: Apache-2.0 */
// A tar byte source that already scans and checks what it hands out, and can pass its parsed
// entries on, so that a reader of the same bytes (the dir driver under the store's register
// tee) neither parses every header a second time nor runs a second SafetyChecker.
//
// Contract (what makes the shared verdict as good as the reader's own, and keeps the error
// precedence of two scanners, source first):
// - attach() succeeds only before the first read(). The reader then still calls read() until
//   it returns 0 (the bytes are the same as without attach()), but it does not scan them: the
//   source calls the handler, in stream order, for exactly the events its own Scanner reports
//   (same Limits), during the read() that hands out their bytes. The source's Scanner::finish()
//   runs when read() returns 0, before the reader sees the end.
// - on_entry is called only for an entry the source accepted: its SafetyChecker verdict
//   (`checked`, what SafetyChecker::check_entry returned for that entry) and its own
//   per-entry checks passed. Events come from one thread, the reader's.
// - An exception thrown by the handler is held until the source has scanned the rest of the
//   bytes of that read(); no more events go to the handler. If the source's own scan of those
//   bytes fails, read() throws the source's error (as when the source scanned a whole read()
//   before the reader looked at it); otherwise it throws the handler's.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/io.h"
#include "tar/path.h"
#include "tar/scanner.h"

namespace rolayer::tar {

class CheckedScanHandler {
 public:
  virtual ~CheckedScanHandler() = default;
  virtual void on_checked_entry(const Entry& e, const SafetyChecker::Checked& checked) = 0;
  virtual void on_payload(const uint8_t* data, size_t len) = 0;
  virtual void on_entry_end() = 0;
};

class ScannedSource : public ByteSource {
 public:
  // Returns false (and changes nothing) when the source cannot: the reader then scans and
  // checks the bytes itself.
  virtual bool attach(CheckedScanHandler& handler) = 0;
};

}  // namespace rolayer::tar
