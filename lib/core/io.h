/* SPDX-License-Identifier: Apache-2.0 */
// Byte streams used across the core: a pull source and a push sink.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rolayer {

// A pull stream. read() fills up to cap bytes and returns how many; 0 means end of stream.
// Errors are thrown as rolayer::Error.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual size_t read(uint8_t* buf, size_t cap) = 0;
};

// A push stream. write() takes all len bytes or throws.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void write(const uint8_t* data, size_t len) = 0;
};

// Random access to one stored payload (a file's content; holes read as zeros).
class PayloadFile {
 public:
  virtual ~PayloadFile() = default;
  // Read up to cap bytes at offset; returns bytes read, 0 at end of file.
  virtual size_t pread(uint64_t offset, uint8_t* buf, size_t cap) = 0;
  // The payload's size in bytes as seen when it was opened, or -1 when unknown. A reader may
  // use it to skip an end-of-file probe; the content can still differ (the stream checks it).
  virtual int64_t size() const { return -1; }
};

}  // namespace rolayer
