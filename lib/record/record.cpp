// SPDX-License-Identifier: Apache-2.0
// The fidelity record: writer and reader. Format: docs/record-format.md (constants in format.h).
#include "record/record.h"

#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

#include "core/error.h"
#include "record/format.h"

namespace rolayer::record {

namespace f = format;

namespace {

// Compression contexts kept for the next writer: creating one costs about 12 µs, a noticeable
// share of registering a tiny layer. At most kPoolSize are kept, and only small ones (a
// context that compressed a long record holds its window: it is freed instead).
constexpr int kPoolSize = 2;
constexpr size_t kPoolMaxBytes = 1 << 20;
std::mutex g_cctx_mu;
ZSTD_CCtx* g_cctx_pool[kPoolSize];  // guarded by g_cctx_mu
int g_cctx_n = 0;

ZSTD_CCtx* take_cctx() {
  {
    std::lock_guard<std::mutex> g(g_cctx_mu);
    if (g_cctx_n > 0) return g_cctx_pool[--g_cctx_n];
  }
  return ZSTD_createCCtx();
}

void give_back_cctx(ZSTD_CCtx* c) {
  if (!c) return;
  if (ZSTD_sizeof_CCtx(c) <= kPoolMaxBytes &&
      !ZSTD_isError(ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters))) {
    std::lock_guard<std::mutex> g(g_cctx_mu);
    if (g_cctx_n < kPoolSize) {
      g_cctx_pool[g_cctx_n++] = c;
      return;
    }
  }
  ZSTD_freeCCtx(c);
}


[[noreturn]] void damaged(const std::string& what) {
  throw Error(Code::Corrupt, "fidelity record is damaged: " + what);
}

[[noreturn]] void zstd_failure(const char* what, size_t code) {
  Code c = ZSTD_getErrorCode(code) == ZSTD_error_memory_allocation ? Code::NoMem : Code::Io;
  throw Error(c, std::string("fidelity record: ") + what + ": " + ZSTD_getErrorName(code));
}

// Checks the fragments of a File item: count, order, no overlap, no overflow, sum == size.
// Returns nullptr when sane, else what is wrong.
const char* fragments_problem(const std::vector<tar::SparseFragment>& frags, uint64_t size) {
  if (frags.size() > f::kMaxFragments) return "too many sparse fragments";
  uint64_t end = 0, sum = 0;
  for (const auto& fr : frags) {
    if (fr.offset < end) return "sparse fragments overlap or are out of order";
    if (fr.length > UINT64_MAX - fr.offset) return "sparse fragment beyond 2^64";
    end = fr.offset + fr.length;
    if (fr.length > UINT64_MAX - sum) return "sparse fragment lengths overflow";
    sum += fr.length;
  }
  if (!frags.empty() && sum != size) return "sparse fragment lengths do not add up to the file size";
  return nullptr;
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Writer

struct Writer::Impl {
  explicit Impl(ByteSink& o) : out(o) {}
  ~Impl() { give_back_cctx(cctx); }

  ByteSink& out;
  ZSTD_CCtx* cctx = nullptr;
  std::string stage;            // uncompressed body bytes not yet given to zstd
  std::string raw;              // pending raw bytes, coalesced up to kRawCoalesce
  std::unique_ptr<uint8_t[]> zbuf;
  size_t zcap = 0;
  Summary sum;
  uint64_t items = 0;
  bool finished = false;
  bool failed = false;

  static constexpr size_t kStageFlush = 128 * 1024;
  BodyBlocks* observer = nullptr;
  std::string body_block;  // the observer's current block
  uint64_t body_index = 0;

  // The body as it goes to the compressor, in kBodyBlock blocks, for the observer.
  void observe(bool last) {
    if (!observer) return;
    size_t at = 0;
    while (at < stage.size()) {
      size_t take = std::min(stage.size() - at, f::kBodyBlock - body_block.size());
      body_block.append(stage, at, take);
      at += take;
      if (body_block.size() == f::kBodyBlock) {
        observer->block(body_index++, reinterpret_cast<const uint8_t*>(body_block.data()), body_block.size());
        body_block.clear();
      }
    }
    if (last && !body_block.empty()) {
      observer->block(body_index++, reinterpret_cast<const uint8_t*>(body_block.data()), body_block.size());
      body_block.clear();
    }
  }

  void compress(ZSTD_EndDirective mode) {
    observe(mode == ZSTD_e_end);
    ZSTD_inBuffer in{stage.data(), stage.size(), 0};
    while (true) {
      ZSTD_outBuffer o{zbuf.get(), zcap, 0};
      size_t r = ZSTD_compressStream2(cctx, &o, &in, mode);
      if (ZSTD_isError(r)) zstd_failure("compression failed", r);
      if (o.pos > 0) out.write(zbuf.get(), o.pos);
      bool done = mode == ZSTD_e_end ? r == 0 : in.pos == in.size;
      if (done) break;
    }
    stage.clear();
  }

  void put(const void* p, size_t n) {
    stage.append(static_cast<const char*>(p), n);
    if (stage.size() >= kStageFlush) compress(ZSTD_e_continue);
  }

  void put_varint(uint64_t v) {
    uint8_t b[f::kMaxVarint];
    put(b, f::put_varint(b, v));
  }

  void emit_raw(const uint8_t* p, size_t n) {
    uint8_t tag = f::kTagRaw;
    put(&tag, 1);
    put_varint(n);
    put(p, n);
    ++items;
  }

  void flush_raw() {
    if (raw.empty()) return;
    emit_raw(reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
    raw.clear();
  }

  void check_usable() const {
    if (failed) throw Error(Code::Inval, "fidelity record writer: unusable after an earlier error");
    if (finished) throw Error(Code::Inval, "fidelity record writer: already finished");
  }
};

void BlockSums::start(uint64_t size) {
  uint64_t n = f::blocks_for(size);
  keep_ = n > 0 && n <= f::kMaxBlocks;
  sums_.clear();
  if (keep_) sums_.reserve(static_cast<size_t>(n));
  in_block_ = 0;
  xxh_.reset();
}

void BlockSums::update(const uint8_t* data, size_t len) {
  if (!keep_) return;
  while (len > 0) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(len, f::kBlockSize - in_block_));
    xxh_.update(data, take);
    data += take;
    len -= take;
    in_block_ += take;
    if (in_block_ == f::kBlockSize) {
      sums_.push_back(xxh_.digest());
      xxh_.reset();
      in_block_ = 0;
    }
  }
}

std::vector<uint64_t> BlockSums::finish() {
  if (!keep_) return {};
  if (in_block_ > 0) sums_.push_back(xxh_.digest());
  keep_ = false;
  in_block_ = 0;
  return std::move(sums_);
}

Writer::Writer(ByteSink& out, BodyBlocks* observer) {
  auto impl = std::make_unique<Impl>(out);
  impl->observer = observer;
  impl->cctx = take_cctx();
  if (!impl->cctx) throw Error(Code::NoMem, "fidelity record: cannot create a zstd context");
  size_t r;
  if (ZSTD_isError(r = ZSTD_CCtx_setParameter(impl->cctx, ZSTD_c_compressionLevel, f::kZstdLevel)) ||
      ZSTD_isError(r = ZSTD_CCtx_setParameter(impl->cctx, ZSTD_c_windowLog, f::kWindowLog)) ||
      ZSTD_isError(r = ZSTD_CCtx_setParameter(impl->cctx, ZSTD_c_checksumFlag, 1)) ||
      ZSTD_isError(r = ZSTD_CCtx_setParameter(impl->cctx, ZSTD_c_contentSizeFlag, 0)))
    zstd_failure("cannot configure zstd", r);
  impl->zcap = ZSTD_CStreamOutSize();
  impl->zbuf.reset(new uint8_t[impl->zcap]);
  impl->raw.reserve(f::kRawCoalesce);
  uint8_t header[f::kHeaderSize];
  std::memcpy(header, f::kMagic, sizeof f::kMagic);
  header[6] = f::kVersion;
  header[7] = 0;  // flags
  out.write(header, sizeof header);
  impl_ = impl.release();
}

Writer::~Writer() { delete impl_; }

void Writer::add_raw(const uint8_t* data, size_t len) {
  Impl& m = *impl_;
  m.check_usable();
  if (len == 0) return;
  try {
    m.sum.raw_bytes += len;
    m.sum.stream_size += len;
    while (len > 0) {
      if (m.raw.empty() && len >= f::kRawCoalesce) {
        // A full item straight from the caller's buffer.
        m.emit_raw(data, f::kRawCoalesce);
        data += f::kRawCoalesce;
        len -= f::kRawCoalesce;
        continue;
      }
      size_t take = std::min(len, f::kRawCoalesce - m.raw.size());
      m.raw.append(reinterpret_cast<const char*>(data), take);
      data += take;
      len -= take;
      if (m.raw.size() == f::kRawCoalesce) m.flush_raw();
    }
  } catch (...) {
    m.failed = true;
    throw;
  }
}

void Writer::add_file(const Item& file) {
  Impl& m = *impl_;
  m.check_usable();
  if (file.type != Item::Type::File)
    throw Error(Code::Inval, "fidelity record writer: add_file given a non-File item");
  if (const char* p = f::path_problem(file.path))
    throw Error(Code::Inval, std::string("fidelity record writer: ") + p).with_path(file.path);
  if (const char* p = fragments_problem(file.fragments, file.size))
    throw Error(Code::Inval, std::string("fidelity record writer: ") + p).with_path(file.path);
  if (file.size > UINT64_MAX - m.sum.stream_size)
    throw Error(Code::Inval, "fidelity record writer: stream size beyond 2^64");
  if (!file.blocks.empty() && (file.blocks.size() != f::blocks_for(file.size) || file.blocks.size() > f::kMaxBlocks))
    throw Error(Code::Inval, "fidelity record writer: the block sums do not match the payload size").with_path(file.path);
  try {
    m.flush_raw();
    uint8_t head[1 + f::kMaxVarint];
    head[0] = f::kTagFile;
    m.put(head, 1 + f::put_varint(head + 1, file.path.size()));
    m.put(file.path.data(), file.path.size());
    uint8_t mid[f::kMaxVarint + 8 + f::kMaxVarint];
    size_t n = f::put_varint(mid, file.size);
    f::put_u64le(mid + n, file.xxh3);
    n += 8;
    n += f::put_varint(mid + n, file.fragments.size());
    m.put(mid, n);
    uint64_t end = 0;
    for (const auto& fr : file.fragments) {
      uint8_t b[2 * f::kMaxVarint];
      size_t k = f::put_varint(b, fr.offset - end);
      k += f::put_varint(b + k, fr.length);
      m.put(b, k);
      end = fr.offset + fr.length;
    }
    ++m.items;
    if (!file.blocks.empty()) {
      uint8_t b[1 + f::kMaxVarint];
      b[0] = f::kTagBlocks;
      m.put(b, 1 + f::put_varint(b + 1, file.blocks.size()));
      for (uint64_t x : file.blocks) {
        uint8_t le[8];
        f::put_u64le(le, x);
        m.put(le, 8);
      }
      ++m.items;
    }
    ++m.sum.files;
    m.sum.payload_bytes += file.size;
    m.sum.stream_size += file.size;
  } catch (...) {
    m.failed = true;
    throw;
  }
}

void Writer::finish() {
  Impl& m = *impl_;
  m.check_usable();
  try {
    m.flush_raw();
    uint8_t t[1 + 5 * f::kMaxVarint];
    size_t n = 0;
    t[n++] = f::kTagEnd;
    n += f::put_varint(t + n, m.sum.stream_size);
    n += f::put_varint(t + n, m.sum.raw_bytes);
    n += f::put_varint(t + n, m.sum.payload_bytes);
    n += f::put_varint(t + n, m.sum.files);
    n += f::put_varint(t + n, m.items);
    m.stage.append(reinterpret_cast<const char*>(t), n);
    m.compress(ZSTD_e_end);
    m.finished = true;
  } catch (...) {
    m.failed = true;
    throw;
  }
}

const Summary& Writer::summary() const { return impl_->sum; }

// ------------------------------------------------------------------------------------------
// Reader

struct Reader::Impl {
  Impl(ByteSource& s, BodyBlocks* c) : src(s), check(c) {}
  ~Impl() { ZSTD_freeDCtx(dctx); }

  ByteSource& src;
  BodyBlocks* check;      // sees each kBodyBlock of the body before it is parsed
  uint64_t body_index = 0;
  ZSTD_DCtx* dctx = nullptr;

  // Compressed input.
  std::unique_ptr<uint8_t[]> ibuf;
  size_t icap = 0, ipos = 0, ilen = 0;
  bool src_eof = false;

  // Decompressed body.
  std::unique_ptr<uint8_t[]> obuf;
  size_t ocap = 0, opos = 0, olen = 0;
  bool frame_done = false;

  enum class State { Start, Items, Done } state = State::Start;
  uint8_t version = 0;
  std::optional<Error> failure;

  uint64_t raw_left = 0;  // bytes of the current Raw item not returned yet
  Summary seen;           // what was decoded
  uint64_t items = 0;
  Summary sum;            // the trailer's

  // --- compressed input ---

  // Reads more compressed input after the unread bytes; false at the end of the source.
  bool refill() {
    if (src_eof) return false;
    if (ipos > 0) {
      std::memmove(ibuf.get(), ibuf.get() + ipos, ilen - ipos);
      ilen -= ipos;
      ipos = 0;
    }
    if (ilen == icap) return true;
    size_t n = src.read(ibuf.get() + ilen, icap - ilen);
    if (n > icap - ilen) throw Error(Code::Io, "fidelity record: source read returned too much");
    if (n == 0) {
      src_eof = true;
      return false;
    }
    ilen += n;
    return true;
  }

  // Ensures at least n unread input bytes (n <= icap); false if the source ends first.
  bool want_input(size_t n) {
    while (ilen - ipos < n)
      if (!refill()) return false;
    return true;
  }

  void read_header() {
    // File header, then the zstd frame header's first 5 bytes (magic and descriptor).
    if (!want_input(f::kHeaderSize)) damaged("truncated header");
    const uint8_t* h = ibuf.get() + ipos;
    if (std::memcmp(h, f::kMagic, sizeof f::kMagic) != 0) damaged("bad magic");
    if (h[6] < f::kMinVersion || h[6] > f::kVersion) damaged("unknown version " + std::to_string(h[6]));
    version = h[6];
    if (h[7] != 0) damaged("unknown flags");
    ipos += f::kHeaderSize;
    if (!want_input(5)) damaged("truncated compressed data");
    const uint8_t* z = ibuf.get() + ipos;
    uint32_t magic = uint32_t{z[0]} | uint32_t{z[1]} << 8 | uint32_t{z[2]} << 16 | uint32_t{z[3]} << 24;
    if (magic != ZSTD_MAGICNUMBER) damaged("compressed data is not a zstd frame");
    if (!(z[4] & 0x04)) damaged("zstd frame has no content checksum");
  }

  // --- decompressed body ---

  // Makes decompressed bytes available; false when the frame has ended.
  bool fill() {
    while (opos == olen) {
      if (frame_done) return false;
      opos = 0;
      olen = 0;
      // With a check, a whole kBodyBlock (ocap bytes) is decoded, or the rest of the frame.
      do {
        if (ipos == ilen) refill();
        ZSTD_inBuffer in{ibuf.get() + ipos, ilen - ipos, 0};
        ZSTD_outBuffer out{obuf.get(), ocap, olen};
        size_t r = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(r)) {
          if (ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation)
            throw Error(Code::NoMem, "fidelity record: out of memory decompressing");
          damaged(std::string("zstd: ") + ZSTD_getErrorName(r));
        }
        ipos += in.pos;
        const bool moved = in.pos > 0 || out.pos > olen;
        olen = out.pos;
        if (r == 0) frame_done = true;
        if (!moved && !frame_done) {
          // No progress. With input left zstd always moves, so this is defensive.
          if (ipos < ilen) damaged("zstd made no progress");
          if (src_eof) damaged("truncated compressed data");
        }
      } while (check && olen < ocap && !frame_done);
      if (check && olen > 0) check->block(body_index++, obuf.get(), olen);
    }
    return true;
  }

  uint8_t byte() {
    if (!fill()) damaged("unexpected end of data");
    return obuf[opos++];
  }

  void bytes(uint8_t* dst, size_t n) {
    while (n > 0) {
      if (!fill()) damaged("unexpected end of data");
      size_t k = std::min(n, olen - opos);
      std::memcpy(dst, obuf.get() + opos, k);
      opos += k;
      dst += k;
      n -= k;
    }
  }

  uint64_t varint(const char* what) {
    uint64_t v = 0;
    for (size_t i = 0; i < f::kMaxVarint; ++i) {
      uint8_t b = byte();
      if (i == f::kMaxVarint - 1 && b > 1) damaged(std::string("varint overflow in ") + what);
      v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if (!(b & 0x80)) {
        if (b == 0 && i > 0) damaged(std::string("non-canonical varint in ") + what);
        return v;
      }
    }
    damaged(std::string("varint too long in ") + what);
  }

  uint64_t u64le() {
    uint8_t b[8];
    bytes(b, 8);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(b[i]) << (8 * i);
    return v;
  }

  // --- items ---

  void start() {
    dctx = ZSTD_createDCtx();
    if (!dctx) throw Error(Code::NoMem, "fidelity record: cannot create a zstd context");
    size_t r = ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, f::kMaxWindowLog);
    if (ZSTD_isError(r)) zstd_failure("cannot configure zstd", r);
    icap = std::max<size_t>(ZSTD_DStreamInSize(), 64);
    ibuf.reset(new uint8_t[icap]);
    ocap = check ? f::kBodyBlock : ZSTD_DStreamOutSize();
    obuf.reset(new uint8_t[ocap]);
    read_header();
    state = State::Items;
  }

  void begin_raw() {
    uint64_t n = varint("raw item length");
    if (n == 0) damaged("empty raw item");
    if (n > UINT64_MAX - seen.raw_bytes) damaged("raw bytes beyond 2^64");
    seen.raw_bytes += n;
    ++items;
    raw_left = n;
  }

  // Fills item with up to kMaxRawPiece raw bytes: the rest of the current Raw item and those
  // of the Raw items right after it.
  void raw_piece(Item& item) {
    item.type = Item::Type::Raw;
    item.path.clear();
    item.size = 0;
    item.xxh3 = 0;
    item.fragments.clear();
    item.raw.clear();
    item.blocks.clear();
    while (true) {
      size_t have = item.raw.size();
      size_t take = static_cast<size_t>(std::min<uint64_t>(raw_left, f::kMaxRawPiece - have));
      item.raw.resize(have + take);
      bytes(reinterpret_cast<uint8_t*>(item.raw.data()) + have, take);
      raw_left -= take;
      if (raw_left > 0 || item.raw.size() == f::kMaxRawPiece) return;
      // Coalesce with a following Raw item.
      if (!fill()) return;  // the caller's next read reports the missing trailer
      if (obuf[opos] != f::kTagRaw) return;
      ++opos;
      begin_raw();
    }
  }

  void file(Item& item) {
    item.type = Item::Type::File;
    item.raw.clear();
    uint64_t plen = varint("path length");
    if (plen == 0) damaged("empty file path");
    if (plen > f::kMaxPath) damaged("file path too long");
    item.path.resize(plen);
    bytes(reinterpret_cast<uint8_t*>(item.path.data()), plen);
    if (const char* p = f::path_problem(item.path)) damaged(p);
    item.size = varint("file size");
    item.xxh3 = u64le();
    uint64_t nfrag = varint("fragment count");
    if (nfrag > f::kMaxFragments) damaged("too many sparse fragments");
    item.fragments.clear();
    item.fragments.reserve(std::min<uint64_t>(nfrag, 4096));
    uint64_t end = 0, total = 0;
    for (uint64_t i = 0; i < nfrag; ++i) {
      uint64_t gap = varint("fragment offset");
      uint64_t len = varint("fragment length");
      if (gap > UINT64_MAX - end) damaged("sparse fragment beyond 2^64");
      uint64_t off = end + gap;
      if (len > UINT64_MAX - off) damaged("sparse fragment beyond 2^64");
      end = off + len;
      if (len > UINT64_MAX - total) damaged("sparse fragment lengths overflow");
      total += len;
      item.fragments.push_back({off, len});
    }
    if (nfrag > 0 && total != item.size) damaged("sparse fragment lengths do not add up to the file size");
    if (item.size > UINT64_MAX - seen.payload_bytes) damaged("payload bytes beyond 2^64");
    seen.payload_bytes += item.size;
    ++seen.files;
    ++items;
    item.blocks.clear();
    // Version 2: a Blocks item may follow (it belongs to this File).
    if (version >= 2 && fill() && obuf[opos] == f::kTagBlocks) {
      ++opos;
      uint64_t n = varint("block count");
      if (n == 0 || n > f::kMaxBlocks || n != f::blocks_for(item.size))
        damaged("block count does not match the file size");
      item.blocks.reserve(static_cast<size_t>(n));
      for (uint64_t i = 0; i < n; ++i) item.blocks.push_back(u64le());
      ++items;
    }
  }

  void trailer() {
    sum.stream_size = varint("trailer");
    sum.raw_bytes = varint("trailer");
    sum.payload_bytes = varint("trailer");
    sum.files = varint("trailer");
    uint64_t count = varint("trailer");
    if (seen.raw_bytes > UINT64_MAX - seen.payload_bytes) damaged("stream size beyond 2^64");
    seen.stream_size = seen.raw_bytes + seen.payload_bytes;
    if (sum.raw_bytes != seen.raw_bytes) damaged("raw byte count does not match the trailer");
    if (sum.payload_bytes != seen.payload_bytes) damaged("payload byte count does not match the trailer");
    if (sum.files != seen.files) damaged("file count does not match the trailer");
    if (sum.stream_size != seen.stream_size) damaged("stream size does not match the trailer");
    if (count != items) damaged("item count does not match the trailer");
    if (fill()) damaged("data after the trailer");
    // The frame has ended (and its checksum was verified): nothing may follow it.
    if (ipos < ilen || refill()) damaged("trailing bytes after the compressed data");
    state = State::Done;
  }

  bool next(Item& item) {
    if (state == State::Start) start();
    if (state == State::Done) return false;
    if (raw_left > 0) {
      raw_piece(item);
      return true;
    }
    if (!fill()) damaged("missing trailer");
    uint8_t tag = obuf[opos++];
    switch (tag) {
      case f::kTagRaw:
        begin_raw();
        raw_piece(item);
        return true;
      case f::kTagFile:
        file(item);
        return true;
      case f::kTagEnd:
        trailer();
        return false;
      case f::kTagBlocks:
        if (version >= 2) damaged("a blocks item that does not follow a file item");
        damaged("unknown item tag " + std::to_string(tag));
      default:
        damaged("unknown item tag " + std::to_string(tag));
    }
  }
};

Reader::Reader(ByteSource& in, BodyBlocks* check) : impl_(new Impl(in, check)) {}

Reader::~Reader() { delete impl_; }

bool Reader::next(Item& item) {
  Impl& m = *impl_;
  if (m.failure) throw *m.failure;
  try {
    return m.next(item);
  } catch (const Error& e) {
    m.failure = e;
    throw;
  } catch (...) {
    m.failure = Error(Code::Io, "fidelity record reader: failed earlier");
    throw;
  }
}

const Summary& Reader::summary() const { return impl_->sum; }

}  // namespace rolayer::record
