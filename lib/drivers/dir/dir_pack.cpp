/* SPDX-License-Identifier: Apache-2.0 */
// The dir driver's payload pack: layout and trust rules in dir_pack.h.
#include "drivers/dir/dir_pack.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "core/fault.h"

namespace rolayer::dirdrv {

namespace {

constexpr size_t kDataBuf = size_t(1) << 20;   // the writer's data buffer
constexpr size_t kIndexBuf = 64 * 1024;        // the writer's and reader's index buffers
constexpr size_t kWindow = size_t(1) << 20;    // the reader's read-ahead window

void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

void write_all(int fd, const uint8_t* p, size_t n, uint64_t off, const std::string& what) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw dirfs::sys_error("cannot write", what, errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
    off += static_cast<uint64_t>(w);
  }
}

}  // namespace

// ---- writer ----------------------------------------------------------------------------------

void PackWriter::open_files() {
  for (const char* name : {kPackFile, kPackIndexFile}) {
    // A fresh layer has neither; a leftover of an interrupted apply of the same layer goes.
    if (::unlinkat(meta_fd_, name, 0) != 0 && errno != ENOENT)
      throw dirfs::sys_error("cannot remove", layer_.meta + "/" + name, errno);
  }
  constexpr int kFlags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  data_fd_ = dirfs::Fd(::openat(meta_fd_, kPackFile, kFlags, 0600));
  if (!data_fd_.valid()) throw dirfs::sys_error("cannot create", layer_.meta + "/" + kPackFile, errno);
  index_fd_ = dirfs::Fd(::openat(meta_fd_, kPackIndexFile, kFlags, 0600));
  if (!index_fd_.valid()) throw dirfs::sys_error("cannot create", layer_.meta + "/" + kPackIndexFile, errno);
  data_buf_.reserve(kDataBuf);
  index_buf_.reserve(kIndexBuf);
}

void PackWriter::begin(uint64_t ordinal, bool regular, uint64_t size) {
  if (in_entry_) end();
  if (!regular || size == 0 || size > max_) return;
  if (ordinal <= last_ordinal_) throw Error(Code::Io, "payload pack: entries out of order");
  if (!data_fd_.valid()) open_files();
  uint8_t rec[kPackRecordSize];
  put_u64(rec, ordinal);
  put_u64(rec + 8, data_size_);
  put_u64(rec + 16, size);
  index_buf_.insert(index_buf_.end(), rec, rec + sizeof rec);
  if (index_buf_.size() >= kIndexBuf) flush_index();
  last_ordinal_ = ordinal;
  ++count_;
  in_entry_ = true;
  entry_left_ = size;
}

void PackWriter::add(const uint8_t* data, size_t len) {
  if (!in_entry_ || len == 0) return;
  if (len > entry_left_) throw Error(Code::Archive, "payload longer than its entry's size (payload pack)");
  entry_left_ -= len;
  while (len > 0) {
    size_t n = std::min(len, kDataBuf - data_buf_.size());
    data_buf_.insert(data_buf_.end(), data, data + n);
    data_size_ += n;  // (flush_data writes the buffer at data_size_ - its size)
    data += n;
    len -= n;
    if (data_buf_.size() == kDataBuf) flush_data();
  }
}

void PackWriter::end() {
  if (!in_entry_) return;
  in_entry_ = false;
  if (entry_left_ != 0) throw Error(Code::Archive, "payload shorter than its entry's size (payload pack)");
}

void PackWriter::flush_data() {
  if (data_buf_.empty()) return;
  ROLAYER_FAULT_POINT("dir.pack.write");
  const uint64_t off = data_size_ - data_buf_.size();
  write_all(data_fd_.get(), data_buf_.data(), data_buf_.size(), off, layer_.meta + "/" + kPackFile);
  data_buf_.clear();
}

void PackWriter::flush_index() {
  if (index_buf_.empty()) return;
  write_all(index_fd_.get(), index_buf_.data(), index_buf_.size(), index_off_, layer_.meta + "/" + kPackIndexFile);
  index_off_ += index_buf_.size();
  index_buf_.clear();
}

void PackWriter::finish() {
  end();
  if (!data_fd_.valid()) return;
  flush_data();
  flush_index();
  ROLAYER_FAULT_POINT("dir.pack.index");
  uint8_t hdr[kPackHeaderSize] = {};
  std::memcpy(hdr, kPackMagic.data(), kPackMagic.size());
  put_u64(hdr + 24, count_);
  put_u64(hdr + 32, data_size_);
  write_all(index_fd_.get(), hdr, sizeof hdr, 0, layer_.meta + "/" + kPackIndexFile);
  // Read-only from now on, like the layer's other files (the apply's syncfs makes them durable).
  if (::fchmod(data_fd_.get(), 0400) != 0 || ::fchmod(index_fd_.get(), 0400) != 0)
    throw dirfs::sys_error("cannot chmod", layer_.meta + "/" + kPackFile, errno);
  data_fd_.reset();
  index_fd_.reset();
}

// ---- reader ----------------------------------------------------------------------------------

void PackReader::FreeDeleter::operator()(uint8_t* p) const { std::free(p); }

PackReader::PackReader(const LayerPaths& layer, dirfs::Fd data, dirfs::Fd index, uint64_t count, uint64_t pack_size)
    : layer_(layer), data_(std::move(data)), index_(std::move(index)), count_(count), pack_size_(pack_size) {}

void PackReader::damaged(const std::string& file, const std::string& why) const {
  const std::string path = layer_.meta + "/" + file;
  throw Error(Code::Corrupt, "the payload pack of layer " + layer_.id + " is damaged: " + path + ": " + why +
                                 ". This may be because internal files in the layer store were modified")
      .with_path(path);
}

namespace {

// Opens meta/<name> as a regular file without following a link and without blocking on a FIFO.
// Returns an invalid Fd when it does not exist.
dirfs::Fd open_pack_file(const LayerPaths& layer, int meta_fd, const char* name, struct stat& st,
                         const std::function<void(const std::string&, const std::string&)>& damaged) {
  dirfs::Fd fd(::openat(meta_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOATIME));
  if (!fd.valid() && errno == EPERM) fd = dirfs::Fd(::openat(meta_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return fd;
    if (errno == ELOOP) damaged(name, "a symbolic link where the store keeps a file");
    throw dirfs::sys_error("cannot open", layer.meta + "/" + name, errno);
  }
  if (::fstat(fd.get(), &st) != 0) throw dirfs::sys_error("cannot stat", layer.meta + "/" + name, errno);
  if (!S_ISREG(st.st_mode)) damaged(name, "not a regular file");
  return fd;
}

}  // namespace

std::shared_ptr<PackReader> PackReader::open(const LayerPaths& layer, int meta_fd) {
  auto fail = [&](const std::string& file, const std::string& why) {
    const std::string path = layer.meta + "/" + file;
    throw Error(Code::Corrupt, "the payload pack of layer " + layer.id + " is damaged: " + path + ": " + why +
                                   ". This may be because internal files in the layer store were modified")
        .with_path(path);
  };
  struct stat ist {}, dst {};
  dirfs::Fd index = open_pack_file(layer, meta_fd, kPackIndexFile, ist, fail);
  dirfs::Fd data = open_pack_file(layer, meta_fd, kPackFile, dst, fail);
  if (!index.valid() && !data.valid()) return nullptr;
  if (!index.valid()) fail(kPackIndexFile, "missing (the pack is there)");
  if (!data.valid()) fail(kPackFile, "missing (its index is there)");
  uint8_t hdr[kPackHeaderSize];
  ssize_t n;
  do n = ::pread(index.get(), hdr, sizeof hdr, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) throw dirfs::sys_error("cannot read", layer.meta + "/" + kPackIndexFile, errno);
  if (static_cast<size_t>(n) != sizeof hdr) fail(kPackIndexFile, "shorter than its header");
  uint8_t want[24] = {};
  std::memcpy(want, kPackMagic.data(), kPackMagic.size());
  if (std::memcmp(hdr, want, sizeof want) != 0) fail(kPackIndexFile, "not a pack index (bad magic)");
  const uint64_t count = get_u64(hdr + 24), pack_size = get_u64(hdr + 32);
  const uint64_t ibytes = static_cast<uint64_t>(ist.st_size);
  if (ibytes < kPackHeaderSize || count > (ibytes - kPackHeaderSize) / kPackRecordSize ||
      ibytes != kPackHeaderSize + count * kPackRecordSize)
    fail(kPackIndexFile, "its size (" + std::to_string(ibytes) + " bytes) does not match its " +
                             std::to_string(count) + " records");
  if (static_cast<uint64_t>(dst.st_size) != pack_size)
    fail(kPackFile, "its size (" + std::to_string(dst.st_size) + " bytes) is not the " + std::to_string(pack_size) +
                        " bytes its index says");
  return std::shared_ptr<PackReader>(new PackReader(layer, std::move(data), std::move(index), count, pack_size));
}

bool PackReader::load_next() {
  if (loaded_ == count_) return false;
  if (ipos_ == ilen_) {
    // Whole records only: the buffer is a multiple of the record size.
    if (ibuf_.empty()) ibuf_.resize(kIndexBuf / kPackRecordSize * kPackRecordSize);
    const uint64_t left = (count_ - loaded_) * kPackRecordSize;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(left, ibuf_.size()));
    size_t got = 0;
    while (got < want) {
      ssize_t n = ::pread(index_.get(), ibuf_.data() + got, want - got, static_cast<off_t>(ifile_off_ + got));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw dirfs::sys_error("cannot read", layer_.meta + "/" + kPackIndexFile, errno);
      }
      if (n == 0) damaged(kPackIndexFile, "it became shorter while it was read");
      got += static_cast<size_t>(n);
    }
    ifile_off_ += got;
    ipos_ = 0;
    ilen_ = got;
  }
  const uint8_t* p = ibuf_.data() + ipos_;
  ipos_ += kPackRecordSize;
  Rec r{get_u64(p), get_u64(p + 8), get_u64(p + 16)};
  const std::string which = "record " + std::to_string(loaded_ + 1);
  if (r.ordinal <= prev_ordinal_) damaged(kPackIndexFile, which + ": payload numbers out of order");
  if (r.size == 0 || r.size > kMaxPackThreshold) damaged(kPackIndexFile, which + ": invalid size " + std::to_string(r.size));
  if (r.offset < prev_end_) damaged(kPackIndexFile, which + ": overlaps the payload before it");
  if (r.offset > pack_size_ || r.size > pack_size_ - r.offset)
    damaged(kPackIndexFile, which + ": lies outside the pack (" + std::to_string(pack_size_) + " bytes)");
  prev_ordinal_ = r.ordinal;
  prev_end_ = r.offset + r.size;
  ++loaded_;
  next_ = r;
  have_next_ = true;
  return true;
}

bool PackReader::lookup(uint64_t ordinal, uint64_t* offset, uint64_t* size) {
  if (!have_next_ && !load_next()) return false;
  if (next_.ordinal > ordinal) return false;
  if (next_.ordinal < ordinal)
    damaged(kPackIndexFile, "it names payload " + std::to_string(next_.ordinal) + ", which the stream does not have");
  *offset = next_.offset;
  *size = next_.size;
  have_next_ = false;
  return true;
}

void PackReader::finish(uint64_t last_ordinal) {
  if (have_next_ || load_next())
    damaged(kPackIndexFile, "it names payload " + std::to_string(next_.ordinal) + ", but the stream has only " +
                                std::to_string(last_ordinal));
}

void PackReader::read(uint64_t offset, uint8_t* buf, size_t n) {
  while (n > 0) {
    if (offset >= win_off_ && offset < win_off_ + win_len_) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(n, win_off_ + win_len_ - offset));
      std::memcpy(buf, win_.get() + (offset - win_off_), k);
      buf += k;
      n -= k;
      offset += k;
      continue;
    }
    if (!win_) {
      win_.reset(static_cast<uint8_t*>(std::aligned_alloc(4096, kWindow)));
      if (!win_) throw Error(Code::NoMem, "cannot allocate the payload pack's read buffer");
    }
    // A window starting on a page boundary of the pack: page-aligned on both sides (the
    // kernel's copy runs at full speed), up to the end of the pack.
    const uint64_t start = offset & ~uint64_t(4095);
    if (start >= pack_size_) damaged(kPackFile, "a read past its end");
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kWindow, pack_size_ - start));
    size_t got = 0;
    while (got < want) {
      ssize_t r = ::pread(data_.get(), win_.get() + got, want - got, static_cast<off_t>(start + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw dirfs::sys_error("cannot read", layer_.meta + "/" + kPackFile, errno);
      }
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    win_off_ = start;
    win_len_ = got;
    if (offset >= start + got) damaged(kPackFile, "it became shorter than its index says while it was read");
  }
}

void PackReader::read_into(uint64_t offset, struct iovec* iov, size_t cnt, size_t total) {
  if (offset > pack_size_ || total > pack_size_ - offset) damaged(kPackFile, "a read past its end");
  uint64_t at = offset;
  while (cnt > 0) {
    const int k = static_cast<int>(std::min<size_t>(cnt, IOV_MAX));
    ssize_t r = ::preadv(data_.get(), iov, k, static_cast<off_t>(at));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw dirfs::sys_error("cannot read", layer_.meta + "/" + kPackFile, errno);
    }
    if (r == 0) damaged(kPackFile, "it became shorter than its index says while it was read");
    at += static_cast<uint64_t>(r);
    // Drop what was filled; a partly filled buffer continues where the read stopped.
    size_t left = static_cast<size_t>(r);
    while (cnt > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --cnt;
    }
    if (cnt > 0 && left > 0) {
      iov->iov_base = static_cast<uint8_t*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
}

}  // namespace rolayer::dirdrv
