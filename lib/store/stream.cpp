// SPDX-License-Identifier: Apache-2.0
// Export: rebuilding a layer's tar from its fidelity record and the driver's payloads (or the
// driver's exact diff), hashed on the way out and checked against the DiffID.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>

#include "core/cpus.h"
#include "core/error.h"
#include "record/format.h"
#include "record/record.h"
#include "digest/offload.h"
#include "digest/pipelined.h"
#include "record/xxh3.h"
#include "store/record_bind.h"
#include "store/state.h"

namespace rolayer {
namespace {

// Verifications open at once in this process (rolayer verify -j N: one per job). While there
// are at least as many as CPUs to run them, each hashes on its own thread: a hashing worker
// per stream would only add its hand-off to CPUs that are all busy already.
std::atomic<int> g_verifying{0};

constexpr size_t kWholePayload = 1 << 20;  // payloads up to this size are checked before they go out
// Streamed payloads are read in pieces of this size, each checksummed and SHA-256-hashed right
// after its read, while it is still in the core's cache (L2 here is 512 KiB to 1 MiB per core).
constexpr size_t kHashChunk = 128 * 1024;

// The record's chunks, in order, from the database.
class ChunkSource : public ByteSource {
 public:
  // Checked against the row's chunk digests (lib/store/record_bind.h) where it has them.
  ChunkSource(std::shared_ptr<StoreState> st, std::string chain_id)
      : st_(std::move(st)), chain_id_(std::move(chain_id)) {
    if (auto digests = load_record_chunk_digests(*st_, chain_id_)) check_.emplace(chain_id_, std::move(*digests));
  }
  // A staged layer's record, still in its temporary file (read from offset 0).
  explicit ChunkSource(int record_fd) : fd_(record_fd) {}
  // True when each chunk is checked as it is read: the body need not be (Assembler::check_).
  bool checked() const { return check_.has_value(); }
  size_t read(uint8_t* buf, size_t cap) override {
    if (fd_ >= 0) return read_file(buf, cap);
    if (pos_ == chunk_.size()) {
      if (done_ || !st_->record_chunk(chain_id_, seq_, chunk_)) {
        if (seq_ == 0 && !done_)
          throw Error(Code::Corrupt, "the fidelity record of layer " + chain_id_ + " is missing");
        if (check_ && !done_) check_->finish(static_cast<uint64_t>(seq_));
        done_ = true;
        return 0;
      }
      if (check_) check_->chunk(static_cast<uint64_t>(seq_), chunk_);  // before the decoder sees a byte of it
      seq_++;
      pos_ = 0;
      if (chunk_.empty()) return read(buf, cap);
    }
    size_t n = std::min(cap, chunk_.size() - pos_);
    std::memcpy(buf, chunk_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  size_t read_file(uint8_t* buf, size_t cap) {
    for (;;) {
      ssize_t n = ::pread(fd_, buf, cap, off_);
      if (n >= 0) {
        off_ += n;
        return static_cast<size_t>(n);
      }
      if (errno != EINTR) throw_errno("read a staged layer's record");
    }
  }

  std::shared_ptr<StoreState> st_;
  std::string chain_id_;
  std::optional<RecordChunkCheck> check_;
  std::string chunk_;
  size_t pos_ = 0;
  int64_t seq_ = 0;
  bool done_ = false;
  int fd_ = -1;
  off_t off_ = 0;
};

// Record + payloads -> the original stream.
//
// Payloads up to kWholePayload bytes are read whole and checked against their XXH3 before any
// of their bytes go out: straight into the caller's buffer when they fit in what is left of it
// (the bytes count as output only once the check passed; a failed check throws, and read()
// never returns them), else into pending_. Longer payloads stream through with an incremental
// XXH3 checked at their end. A whole-file payload's last read asks for one byte more than the
// record holds: a short result proves the end of the file without a separate probe, and a full
// one is a file longer than recorded. A driver whose PayloadFile knows its size (size() >= 0)
// saves that byte: the size is compared with the record's when the file opens.
//
// SHA-256 of the output: every byte is hashed (into sha) from the caller's buffer, in stream
// order, before read() returns: a streamed payload piece by piece (kHashChunk) right after
// its read and checksum, everything else (headers, small payloads, what comes out of
// pending_) once kHashChunk bytes have gathered or read() returns. The pieces are lent to the
// OffloadHasher, which hashes them on its worker while this thread reads the next ones (or
// inline: short streams, one CPU); read() waits for it before it returns, and on an error
// abandons what is not hashed, so the caller's buffer is never read after the read that
// filled it. One read of the bytes from the page cache, no copy for the hash.
class Assembler : public ByteSource {
 public:
  // verify: the driver's payloads for a verification (Driver::verify_payloads).
  Assembler(std::shared_ptr<StoreState> st, const LayerNode& node, OffloadHasher& sha, bool verify = false)
      : chunks_(st, node.chain_id.str()),
        check_(chunks_.checked() ? nullptr : bound_check(*st, node.chain_id.str())),
        reader_(chunks_, check_.get()),
        session_(verify ? st->driver->verify_payloads(node.cache_id) : st->driver->payloads(node.cache_id)),
        sha_(&sha),
        whole_blocks_(verify) {}
  // A staged layer (Store::stage): its record in a temporary file, its payloads in cache_id.
  // Its output is not hashed here: the commit that reads it registers it, which hashes it.
  Assembler(const std::shared_ptr<StoreState>& st, int record_fd, const std::string& cache_id)
      : chunks_(record_fd), reader_(chunks_, nullptr), session_(st->driver->payloads(cache_id)), sha_(nullptr) {}

  size_t read(uint8_t* buf, size_t cap) override {
    obuf_ = buf;
    ocap_ = cap;
    hashed_ = 0;
    try {
      size_t out = assemble(buf, cap);
      flush_batch();
      hash_to(out);
      if (sha_) sha_->drain();
      obuf_ = nullptr;
      return out;
    } catch (...) {
      // Payloads read in a batch (before the failure in stream order) are checked first: their
      // error is the one the stream meets first.
      std::exception_ptr e = std::current_exception();
      if (!batch_.empty()) {
        try {
          flush_batch();
        } catch (...) {
          e = std::current_exception();
        }
      }
      if (sha_) sha_->abandon();  // the caller's buffer is its own again when read() leaves
      obuf_ = nullptr;
      std::rethrow_exception(e);
    }
  }

 private:
  size_t assemble(uint8_t* buf, size_t cap) {
    size_t out = 0;
    while (out < cap) {
      if (out - hashed_ >= kHashChunk) {
        flush_batch();  // (its bytes are read and checked before they are hashed)
        hash_to(out);
      }
      if (pend_pos_ < pend_len_) {
        size_t n = std::min(cap - out, pend_len_ - pend_pos_);
        std::memcpy(buf + out, pending_.get() + pend_pos_, n);
        pend_pos_ += n;
        out += n;
        continue;
      }
      if (file_) {
        out += stream_payload(buf + out, cap - out);
        if (next_read_) {  // (whole_blocks_: the next block goes straight into the next read's buffer)
          next_read_ = false;
          break;
        }
        continue;
      }
      if (done_) break;
      if (!reader_.next(item_)) {
        if (check_) check_->finish();
        session_->finish();
        done_ = true;
        break;
      }
      if (item_.type == record::Item::Type::Raw) {
        size_t n = item_.raw.size();
        if (n <= cap - out) {
          std::memcpy(buf + out, item_.raw.data(), n);
          out += n;
        } else {
          std::memcpy(pending_buf(n), item_.raw.data(), n);
          pend_pos_ = 0;
          pend_len_ = n;
        }
      } else {
        out += start_file(buf + out, cap - out);
      }
    }
    return out;
  }

  // The check of the record's body against the digests in the layer's row, for a row without
  // chunk digests (none for a row registered before records were bound: such a record is read
  // as before).
  static std::unique_ptr<RecordBodyCheck> bound_check(StoreState& st, const std::string& chain_id) {
    auto digests = load_record_digests(st, chain_id);
    if (!digests) return nullptr;
    return std::make_unique<RecordBodyCheck>(chain_id, std::move(*digests));
  }

  // file_->pread(offset, dst, want), through a page-aligned buffer of our own when dst lies
  // just past the file offset modulo a page (1 to 63 bytes; glibc's malloc gives exactly that,
  // 16 bytes into a page, for every buffer of 128 KiB or more): the kernel's copy from the page
  // cache runs about 5 times slower for that relative alignment (measured on AMD EPYC, Linux
  // 6.18: `rep movsb`), far more than the copy of a cache-hot buffer costs.
  size_t read_at(uint64_t offset, uint8_t* dst, size_t want) {
    const size_t skew = (reinterpret_cast<uintptr_t>(dst) - static_cast<uintptr_t>(offset)) & 4095;
    if (skew == 0 || skew >= 64 || want > kHashChunk + 1) return file_->pread(offset, dst, want);
    if (!bounce_) bounce_.reset(static_cast<uint8_t*>(std::aligned_alloc(4096, kBounceSize)));
    if (!bounce_) throw Error(Code::NoMem, "cannot allocate a read buffer");
    // Half a page off both: neither the kernel's copy into it nor the memcpy out of it has
    // its source and destination at that unlucky distance.
    uint8_t* b = bounce_.get() + ((offset + 2048) & 4095);
    size_t n = file_->pread(offset, b, want);
    if (n > want) throw Error(Code::Io, "a payload read returned more bytes than asked for");
    std::memcpy(dst, b, n);
    return n;
  }

  // Hashes the output not hashed yet, up to offset end of the caller's buffer.
  void hash_to(size_t end) {
    if (sha_ && end > hashed_) sha_->lend(obuf_ + hashed_, end - hashed_);
    hashed_ = end;
  }

  [[noreturn]] static void corrupt(const std::string& path, const std::string& why) {
    throw Error(Code::Corrupt, "file integrity checksum failed for \"" + path + "\": " + why +
                                   ". This may be because internal files in the layer store were modified")
        .with_path(path);
  }
  [[noreturn]] void corrupt(const std::string& why) { corrupt(item_.path, why); }
  [[noreturn]] void shorter() {
    corrupt("the file is shorter than recorded (" + std::to_string(item_.size) + " bytes)");
  }
  [[noreturn]] void longer() {
    corrupt("the file is longer than recorded (" + std::to_string(item_.size) + " bytes)");
  }

  // pending_ with room for at least n bytes (its content is not kept).
  uint8_t* pending_buf(size_t n) {
    if (n > pend_cap_) {
      size_t c = std::max(n, std::min<size_t>(kWholePayload + 1, std::max<size_t>(pend_cap_ * 2, 64 * 1024)));
      pending_.reset(new uint8_t[c]);
      pend_cap_ = c;
    }
    return pending_.get();
  }

  // Opens the current File item. A small payload is read and checked whole: into dst when it
  // fits in room (returns its size: those bytes are output), else into pending_ (returns 0).
  size_t start_file(uint8_t* dst, size_t room) {
    file_ = session_->open(item_.path);
    frags_ = item_.fragments;
    if (frags_.empty()) frags_.push_back({0, item_.size});
    frag_ = 0;
    frag_pos_ = 0;
    left_ = item_.size;
    eof_seen_ = false;
    pend_pos_ = pend_len_ = 0;
    if (item_.fragments.empty()) {
      // A driver that knows the file's size (the dir driver's fstat) saves the end probe.
      int64_t known = file_->size();
      if (known >= 0) {
        if (static_cast<uint64_t>(known) > item_.size) longer();
        if (static_cast<uint64_t>(known) < item_.size) shorter();
        eof_seen_ = true;
      }
    }
    if (item_.size > kWholePayload) {
      flush_batch();  // (its pieces are hashed as they are read: what is before them first)
      xxh_.reset();
      block_ = 0;
      return 0;  // streamed by stream_payload (block by block when the record has block sums)
    }
    const size_t size = static_cast<size_t>(item_.size);
    const bool whole = item_.fragments.empty();
    if (whole && eof_seen_ && size > 0 && size <= room && session_->batchable(*file_)) {
      // Read later with its neighbours, straight into its place in dst (flush_batch), and
      // checked there before read() returns or anything past it is hashed.
      batch_.push_back({std::move(file_), dst, size, item_.xxh3, std::move(item_.path)});
      return size;
    }
    if (!whole) flush_batch();  // (fill() hashes what it reads at once: what is before it first)
    const size_t need = size + (whole && !eof_seen_ ? 1 : 0);  // + the byte that proves the end
    const bool direct = need <= room;
    uint8_t* p = direct ? dst : pending_buf(need);
    if (whole) {
      size_t got = 0;
      while (!(eof_seen_ && got == size)) {
        size_t want = size - got + (eof_seen_ ? 0 : 1);
        size_t n = read_at(got, p + got, want);
        if (n == 0) {
          if (got < size) shorter();
          break;
        }
        if (n > size - got) longer();
        got += n;
        if (got == size) break;  // short of `want` (or the size was known): the end of the file
      }
    } else {
      size_t got = 0;
      while (left_ > 0) got += fill(p + got, left_);
    }
    if (record::Xxh3::hash(p, size) != item_.xxh3) corrupt("its content differs from what was registered");
    file_.reset();
    if (direct) return size;
    pend_len_ = size;
    return 0;
  }

  // Reads the payloads gathered in batch_ (the driver: one system call per run of them) into
  // their places in the caller's buffer and checks each against its XXH3, in stream order.
  // None of those bytes is output or hashed before this: a failed check throws, and read()
  // never returns them.
  void flush_batch() {
    if (batch_.empty()) return;
    std::vector<Batched> batch;
    batch.swap(batch_);  // empty again whatever happens below (read()'s error path flushes)
    reads_.clear();
    for (auto& b : batch) reads_.push_back({b.file.get(), b.dst, b.size});
    session_->read_batch(reads_.data(), reads_.size());
    for (auto& b : batch) {
      if (record::Xxh3::hash(b.dst, b.size) != b.xxh3) corrupt(b.path, "its content differs from what was registered");
    }
    batch.clear();
    batch.swap(batch_);  // (keeps the vector's capacity)
  }

  // Reads the next bytes of the current file's payload into dst (room bytes available there),
  // at most kHashChunk, adds them to the payload's (or the block's) XXH3, and when dst is the
  // caller's buffer hashes them into the output's SHA-256 while they are in cache. For a
  // whole-file payload whose rest fits in room, asks for one byte more (see the class).
  size_t fill(uint8_t* dst, uint64_t room) {
    room = std::min<uint64_t>(room, kHashChunk);
    while (frag_ < frags_.size() && frag_pos_ == frags_[frag_].length) {
      frag_++;
      frag_pos_ = 0;
    }
    if (frag_ >= frags_.size()) corrupt("the record's fragments do not add up");
    const auto& f = frags_[frag_];
    const uint64_t rest = f.length - frag_pos_;
    const bool probe = item_.fragments.empty() && !eof_seen_ && room > rest;
    uint64_t want = probe ? rest + 1 : std::min<uint64_t>(room, rest);
    size_t n = read_at(f.offset + frag_pos_, dst, static_cast<size_t>(want));
    if (n == 0) shorter();
    if (n > rest) longer();
    if (probe && n == rest) eof_seen_ = true;
    (item_.blocks.empty() ? xxh_ : bxxh_).update(dst, n);
    const uintptr_t d = reinterpret_cast<uintptr_t>(dst), o = reinterpret_cast<uintptr_t>(obuf_);
    if (obuf_ && d >= o && d - o < ocap_) hash_to(d - o + n);  // (else pending_: hashed when it goes out)
    frag_pos_ += n;
    left_ -= n;
    return n;
  }

  size_t stream_payload(uint8_t* dst, size_t cap) {
    if (!item_.blocks.empty()) return next_block(dst, cap);
    size_t n = left_ ? fill(dst, cap) : 0;
    if (left_ == 0) finish_file();
    return n;
  }

  // A large payload with per-block sums (record format 2): each 1 MiB block is read whole and
  // checked before any of its bytes go out, like a small payload. Its first room bytes are read
  // into dst, the rest (when it does not fit) into pending_, which goes out at the start of the
  // next read(): returns the bytes in dst. (A caller's buffer of 1 MiB meets every block of a
  // payload at the same distance from its start; reading whole blocks into pending_ made every
  // byte of such a payload cost one more copy, this only the part that does not fit.)
  size_t next_block(uint8_t* dst, size_t room) {
    if (left_ == 0) {
      finish_file();
      return 0;
    }
    const size_t blen = static_cast<size_t>(std::min<uint64_t>(record::format::kBlockSize, left_));
    if (blen > room && whole_blocks_ && room < ocap_ && blen <= ocap_) {
      next_read_ = true;  // read() returns what it has: the block fits whole in the next read
      return 0;
    }
    const size_t head = std::min(blen, room);
    uint8_t* tail = head < blen ? pending_buf(blen - head) : nullptr;
    size_t got = 0;
    bxxh_.reset();
    while (got < head) got += fill(dst + got, head - got);
    while (got < blen) got += fill(tail + (got - head), blen - got);
    if (block_ >= item_.blocks.size() || bxxh_.digest() != item_.blocks[block_])
      corrupt("block " + std::to_string(block_) + " (bytes " + std::to_string(block_ * record::format::kBlockSize) +
              " to " + std::to_string(block_ * record::format::kBlockSize + blen) +
              ") differs from what was registered");
    ++block_;
    if (left_ == 0) finish_file();
    if (tail) {
      pend_pos_ = 0;
      pend_len_ = blen - head;
    }
    return head;
  }

  void finish_file() {
    if (item_.fragments.empty() && !eof_seen_) {
      uint8_t extra;
      if (file_->pread(item_.size, &extra, 1) != 0) longer();
    }
    // A payload with block sums was checked block by block, every byte of it: its XXH3 as a
    // whole would only re-check the same bytes (and is not computed).
    if (item_.blocks.empty() && xxh_.digest() != item_.xxh3)
      corrupt("its content differs from what was registered");
    file_.reset();
  }

  ChunkSource chunks_;
  std::unique_ptr<RecordBodyCheck> check_;
  record::Reader reader_;
  std::unique_ptr<PayloadSession> session_;
  // A whole payload read in a batch (PayloadSession::read_batch): its place in the caller's
  // buffer, its size and the record's XXH3 of it. (Declared after session_: its files go first.)
  struct Batched {
    std::unique_ptr<PayloadFile> file;
    uint8_t* dst;
    size_t size;
    uint64_t xxh3;
    std::string path;
  };
  std::vector<Batched> batch_;
  std::vector<PayloadSession::BatchRead> reads_;
  record::Item item_;
  std::unique_ptr<uint8_t[]> pending_;
  size_t pend_cap_ = 0, pend_pos_ = 0, pend_len_ = 0;
  std::unique_ptr<PayloadFile> file_;
  std::vector<tar::SparseFragment> frags_;
  size_t frag_ = 0;
  size_t block_ = 0;  // the next block of a payload with block sums
  uint64_t frag_pos_ = 0, left_ = 0;
  bool eof_seen_ = false;
  record::Xxh3 xxh_;   // the current payload's XXH3 (payloads without block sums)
  record::Xxh3 bxxh_;  // the current block's XXH3 (payloads with block sums)
  bool done_ = false;
  struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  static constexpr size_t kBounceSize = kHashChunk + 2 * 4096;
  std::unique_ptr<uint8_t, FreeDeleter> bounce_;  // see read_at()
  OffloadHasher* sha_;        // the output's SHA-256 (VerifiedStream's); null: not hashed
  uint8_t* obuf_ = nullptr;   // the caller's buffer during read(), else null
  size_t ocap_ = 0;
  size_t hashed_ = 0;         // obuf_[0, hashed_) is in sha_
  // A verification (rolayer_layer_verify drops the bytes) takes a short read rather than a
  // block copied partly through pending_: a block that does not fit in what is left of the caller's
  // buffer, but would in a whole one, ends the read (never with 0 bytes) and opens the next.
  bool whole_blocks_ = false;
  bool next_read_ = false;
};

// A driver's exact diff checked per 1 MiB block against the sums taken at register
// (layers.stream_blocks): each block is read whole and checked before any of its bytes go out,
// into the caller's buffer when it fits, else into a buffer of its own.
class BlockCheckedSource : public ByteSource {
 public:
  BlockCheckedSource(std::unique_ptr<ByteSource> inner, std::string sums, std::string diff_id)
      : inner_(std::move(inner)), sums_(std::move(sums)), diff_id_(std::move(diff_id)) {}

  size_t read(uint8_t* buf, size_t cap) override {
    if (pos_ < len_) {
      size_t n = std::min(cap, len_ - pos_);
      std::memcpy(buf, pending_.get() + pos_, n);
      pos_ += n;
      return n;
    }
    if (eof_) return 0;
    const size_t block = static_cast<size_t>(record::format::kBlockSize);
    const bool direct = cap >= block;
    if (!direct && !pending_) pending_.reset(new uint8_t[block]);
    uint8_t* p = direct ? buf : pending_.get();
    size_t got = 0;
    while (got < block) {
      size_t n = inner_->read(p + got, block - got);
      if (n > block - got) throw Error(Code::Io, "the layer's source returned more bytes than asked for");
      if (n == 0) {
        eof_ = true;
        break;
      }
      got += n;
    }
    const size_t registered = sums_.size() / 8;
    if (got == 0) {
      if (index_ != registered)
        fail("it ends after " + std::to_string(index_) + " of the " + std::to_string(registered) +
             " blocks of 1 MiB registered");
      return 0;
    }
    if (index_ >= registered)
      fail("it is longer than the " + std::to_string(registered) + " blocks of 1 MiB registered");
    uint64_t want = 0;
    for (int i = 0; i < 8; ++i) want |= static_cast<uint64_t>(static_cast<uint8_t>(sums_[index_ * 8 + i])) << (8 * i);
    if (record::Xxh3::hash(p, got) != want)
      fail("block " + std::to_string(index_) + " (bytes " + std::to_string(index_ * block) + " to " +
           std::to_string(index_ * block + got) + ") differs from what was registered");
    ++index_;
    if (direct) return got;
    pos_ = 0;
    len_ = got;
    return read(buf, cap);
  }

 private:
  // The stream does not match what was registered: the DiffID's error (the Docker engine's
  // message), raised at the first damaged block instead of at the end.
  [[noreturn]] void fail(const std::string& why) {
    throw Error(Code::Digest, "could not verify layer data for: " + diff_id_ +
                                  ". This may be because internal files in the layer store were modified. "
                                  "Re-pulling or rebuilding this image may resolve the issue (the stored stream: " +
                                  why + ")");
  }
  std::unique_ptr<ByteSource> inner_;
  std::string sums_, diff_id_;
  std::unique_ptr<uint8_t[]> pending_;
  size_t pos_ = 0, len_ = 0, index_ = 0;
  bool eof_ = false;
};

class VerifiedStream : public ByteSource {
 public:
  VerifiedStream(std::shared_ptr<StoreState> st, std::unique_ptr<LayerRef> keep, bool verify)
      : st_(std::move(st)), keep_(std::move(keep)), verify_(verify) {
    if (verify_) g_verifying.fetch_add(1, std::memory_order_relaxed);
  }
  ~VerifiedStream() override {
    if (verify_) g_verifying.fetch_sub(1, std::memory_order_relaxed);
  }

  size_t read(uint8_t* buf, size_t cap) override {
    if (failure_) std::rethrow_exception(failure_);
    if (done_ || cap == 0) return 0;
    try {
      if (!inner_) open_inner();
      const auto& node = keep_->node();
      // (Between reads nothing is lent: the switch is in order.)
      if (verify_ && self_hashed_)
        inline_sha_.set_inline(g_verifying.load(std::memory_order_relaxed) >= cpus_);
      size_t n = inner_->read(buf, cap);
      if (n > cap) throw Error(Code::Io, "the layer's source returned more bytes than asked for");
      if (n > 0) {
        // (The Assembler hashed its bytes into inline_sha_ already.)
        // A stream that runs past the registered size (a device or a caller's driver that
        // never ends its diff) fails at once: none of those bytes count as output.
        const uint64_t limit = static_cast<uint64_t>(std::max<int64_t>(0, node.stream_size));
        if (n > limit - total_)
          throw Error(Code::Corrupt, "the stored stream of layer " + node.diff_id.str() + " is longer than the " +
                                         std::to_string(limit) +
                                         " bytes registered. This may be because internal files in the layer "
                                         "store were modified");
        total_ += n;
        if (!self_hashed_) sha_.update(buf, n);
        return n;
      }
      Digest got = self_hashed_ ? inline_sha_.finish() : sha_.finish();
      if (got != node.diff_id)
        throw Error(Code::Digest, "could not verify layer data for: " + node.diff_id.str() +
                                      ". This may be because internal files in the layer store were modified. "
                                      "Re-pulling or rebuilding this image may resolve the issue");
      done_ = true;
      return 0;
    } catch (Error& e) {
      if (e.diff_id().empty()) e.with_diff_id(keep_->node().diff_id.str());
      failure_ = std::current_exception();
      throw;
    } catch (...) {
      failure_ = std::current_exception();
      throw;
    }
  }

 private:
  void open_inner() {
    const auto& node = keep_->node();
    if (node.has_record) {
      inner_ = std::make_unique<Assembler>(st_, node, inline_sha_, verify_);
      self_hashed_ = true;
    } else {
      inner_ = st_->driver->diff(node.cache_id, node.parent ? node.parent->cache_id : std::string());
      // Sums per 1 MiB block taken at register (none for a layer registered before them).
      if (auto sums = load_stream_blocks(*st_, node.chain_id.str()))
        inner_ = std::make_unique<BlockCheckedSource>(std::move(inner_), std::move(*sums), node.diff_id.str());
    }
  }

  std::shared_ptr<StoreState> st_;
  std::unique_ptr<LayerRef> keep_;
  bool verify_;
  // A verification's: the CPUs of the thread that opened it (usable_cpus() is a system call:
  // asked once, not at every read).
  const int cpus_ = verify_ ? usable_cpus() : 0;
  std::unique_ptr<ByteSource> inner_;
  PipelinedHasher sha_;  // SHA-256 of a driver's diff on a worker thread (our copy of the bytes only)
  OffloadHasher inline_sha_;  // SHA-256 of an assembled stream, lent by the Assembler in place
  bool self_hashed_ = false;
  uint64_t total_ = 0;   // bytes returned so far
  bool done_ = false;
  std::exception_ptr failure_;
};

}  // namespace

std::unique_ptr<ByteSource> make_verified_stream(std::shared_ptr<StoreState> st, std::unique_ptr<LayerRef> keep,
                                                 bool verify) {
  return std::make_unique<VerifiedStream>(std::move(st), std::move(keep), verify);
}

std::unique_ptr<ByteSource> make_staged_stream(const std::shared_ptr<StoreState>& st, int record_fd,
                                               const std::string& cache_id) {
  return std::make_unique<Assembler>(st, record_fd, cache_id);
}

}  // namespace rolayer
