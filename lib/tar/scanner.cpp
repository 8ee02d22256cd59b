// SPDX-License-Identifier: Apache-2.0
// The raw tar stream scanner. See scanner.h for the contract; the reading rules are
// summarised here because they decide where every entry's data area starts and ends.
//
// Reading rules (they follow Go's archive/tar wherever Go accepts the input, since that is
// what the Docker engine and containerd use to unpack layers; where Go refuses an input
// and GNU tar / libarchive agree on a reading, that reading may be used instead):
//
// * A header block must have a valid checksum (unsigned or signed byte sums). Its format is
//   guessed like Go: "ustar\0" magic plus "tar\0" at 508 is star, "ustar\0" is ustar/pax,
//   "ustar " + " \0" is GNU, anything else V7. Every numeric field of every header is parsed
//   (octal with NUL/space padding trimmed, or base-256); a malformed one is an error.
// * Size of the data area that follows a header:
//     - 'x', 'g', 'L', 'K': the size field, capped by Limits::max_extension_size ('L' and
//       'K' also by Limits::max_name_size + 1; names and link targets longer than
//       max_name_size are refused however they are spelled).
//     - '1' '2' '3' '4' '5' '6' and regular typeflags whose final name ends in '/'
//       (directories): no data; the size field is ignored, as Go always does and as
//       libarchive does for all of them but pax hard links (hdr-only.tar,
//       test_compat_tar_hardlink_1, test_compat_tar_directory_1). When the size (after
//       pax overrides) is non-zero, the next 512 bytes are looked at first: if they are a
//       valid header, a zero block or the end of input, the size is ignored; otherwise the
//       size is obeyed (pax hard links with a body) and that data area goes to on_raw, with
//       Entry::data_size set to it (0 when ignored). Every input Go reads is therefore split
//       the same way; only inputs Go refuses can take the second branch.
//     - '0', '\0', '7': the size (pax 'size' overrides the header field) is payload.
//     - 'S' (old GNU sparse): the size field is the stored data; it is payload and must
//       equal the sum of the fragment lengths. The map is in the header and its extension
//       blocks (raw).
//     - PAX GNU.sparse 0.0 / 0.1: as 'S' (stored size == sum of the fragment lengths).
//     - PAX GNU.sparse 1.0: the data area begins with the decimal map, padded to a block
//       boundary (raw), then the fragments (payload); any bytes the size declares beyond
//       the fragments go to on_raw (test_read_format_gtar_sparse_skip_entry).
//     - anything else ('D', 'V', 'A', 'M', 'N', unknown...): the size; the data is raw.
//   The padding up to the next 512-byte boundary is always raw.
// * SUN.holesdata is not reported as sparse: Solaris stores the holes in the archive as
//   zero bytes, so the data area is the whole logical file; the entry is a Regular file
//   whose payload is the data area (Go reads it the same way). The record is ignored.
// * End of archive: the first all-zero block where a header is expected ends the entries.
//   It and everything after it (more zero blocks, garbage, a second archive, a partial
//   block) go to on_raw unparsed; a single zero block followed by non-zero bytes is
//   accepted the same way (GNU tar and libarchive stop there too; Go refuses it). An input
//   may also end cleanly at a header boundary without any zero block. An input that ends
//   inside the *padding* of the last entry (all of its data present) is accepted, as Go
//   does; ending anywhere else inside an entry, a header or extension data is an error.
// * Extension headers: consecutive 'x' headers, 'L' headers or 'K' headers: the last of
//   each kind wins. GNU 'L'/'K' override pax path/linkpath (as in Go); GNU.sparse.name
//   overrides both. A 'g' header, or the end of the archive, while 'x'/'L'/'K' headers are
//   pending is refused (readers disagree: Go drops the pending records, others keep them).
// * 'g' global records apply to the following entries, keyword by keyword, until a later
//   'g' record with the same keyword replaces or (empty value) clears them, for the
//   per-file attributes mtime, uid, gid, uname, gname and SCHILY.xattr.* (atime and ctime
//   are validated only), at most kMaxGlobalRecords bytes in all. path, linkpath, size,
//   GNU.sparse.* and any other keyword in a 'g' header are ignored: applying path or size
//   would rename every entry or change how the stream is split, and no reader of the
//   Docker ecosystem does that (Go and libarchive ignore 'g' records altogether).
//   An 'x' record with an empty value means "use the header field" (POSIX, Go), also
//   when a global record has that keyword.
// * Pax records are parsed as Go does ("%d %s=%s\n", length checked, '=' and the final
//   newline required); a NUL in path/linkpath/uname/gname/GNU.sparse.name values or in
//   any other keyword (e.g. a SCHILY.xattr name) is an error. Invalid numbers or times in
//   the records this scanner uses are errors; other keywords are ignored (LIBARCHIVE.*,
//   RHT.*, SCHILY.acl.*, comment, hdrcharset...).
#include "tar/scanner.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string_view>
#include <unordered_map>

#include "core/error.h"

namespace rolayer::tar {

namespace {

constexpr size_t kBlock = 512;
// Total size (keys + values) of the global records kept for the following entries. They are
// copied into every entry, so the bound keeps that amplification small; real archives keep
// a few scalar records there (git's comment and star's SCHILY.volhdr.* are not kept at all).
constexpr uint64_t kMaxGlobalRecords = 8192;
// Largest size accepted for any data area, so that size + padding never overflows.
constexpr uint64_t kMaxSize = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - kBlock;

[[noreturn]] void fail(uint64_t off, const std::string& what) {
  throw Error(Code::Archive, "malformed tar stream: " + what + " (at byte offset " +
                                 std::to_string(off) + ")");
}

uint64_t pad_of(uint64_t n) { return (kBlock - (n % kBlock)) % kBlock; }

bool is_zero_block(const uint8_t* b) {
  for (size_t i = 0; i < kBlock; ++i)
    if (b[i] != 0) return false;
  return true;
}

// A NUL-terminated string field (the whole field if no NUL).
std::string field_str(const uint8_t* b, size_t n) {
  size_t len = 0;
  while (len < n && b[len] != 0) ++len;
  return std::string(reinterpret_cast<const char*>(b), len);
}

// Octal as Go parses it: NULs and spaces trimmed at both ends, then cut at the first NUL;
// an empty field is 0. Returns false on a malformed or out-of-range value.
bool parse_octal(const uint8_t* b, size_t n, int64_t& out) {
  size_t lo = 0, hi = n;
  while (lo < hi && (b[lo] == ' ' || b[lo] == 0)) ++lo;
  while (hi > lo && (b[hi - 1] == ' ' || b[hi - 1] == 0)) --hi;
  if (lo == hi) {
    out = 0;
    return true;
  }
  for (size_t i = lo; i < hi; ++i) {
    if (b[i] == 0) {
      hi = i;
      break;
    }
  }
  uint64_t v = 0;
  for (size_t i = lo; i < hi; ++i) {
    if (b[i] < '0' || b[i] > '7') return false;
    if (v > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) >> 3)) return false;
    v = (v << 3) | static_cast<uint64_t>(b[i] - '0');
  }
  out = static_cast<int64_t>(v);
  return true;
}

// Octal or GNU base-256 (first byte's high bit set; two's complement, big-endian).
bool parse_numeric(const uint8_t* b, size_t n, int64_t& out) {
  if (n > 0 && (b[0] & 0x80) != 0) {
    const uint8_t inv = (b[0] & 0x40) ? 0xff : 0x00;
    uint64_t x = 0;
    for (size_t i = 0; i < n; ++i) {
      uint8_t c = static_cast<uint8_t>(b[i] ^ inv);
      if (i == 0) c &= 0x7f;
      if ((x >> 56) != 0) return false;
      x = (x << 8) | c;
    }
    if ((x >> 63) != 0) return false;
    out = inv ? ~static_cast<int64_t>(x) : static_cast<int64_t>(x);
    return true;
  }
  return parse_octal(b, n, out);
}

bool checksum_ok(const uint8_t* b) {
  int64_t want = 0;
  if (!parse_octal(b + 148, 8, want)) return false;
  // Sums of the whole block, unsigned and signed, then the checksum field counted as eight
  // spaces: branch-free loops the compiler vectorises (this runs for every header, twice per
  // register: the store's scanner and the driver's).
  uint32_t u = 0;
  int32_t s = 0;
  for (size_t i = 0; i < kBlock; ++i) u += b[i];
  for (size_t i = 0; i < kBlock; ++i) s += static_cast<int8_t>(b[i]);
  for (size_t i = 148; i < 156; ++i) {
    u -= b[i];
    s -= static_cast<int8_t>(b[i]);
  }
  u += 8 * ' ';
  s += 8 * ' ';
  return want == static_cast<int64_t>(u) || want == static_cast<int64_t>(s);
}

enum class Fmt { V7, Ustar, Star, Gnu };

Fmt get_format(const uint8_t* b) {
  const bool ustar_magic = std::memcmp(b + 257, "ustar\0", 6) == 0;
  if (ustar_magic && std::memcmp(b + 508, "tar\0", 4) == 0) return Fmt::Star;
  if (ustar_magic) return Fmt::Ustar;
  if (std::memcmp(b + 257, "ustar ", 6) == 0 && std::memcmp(b + 263, " \0", 2) == 0)
    return Fmt::Gnu;
  return Fmt::V7;
}

// Decimal integer as Go's strconv.ParseInt(s, 10, 64): optional sign, digits only.
bool parse_dec(std::string_view s, int64_t& out) {
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    neg = s[i] == '-';
    ++i;
  }
  if (i == s.size()) return false;
  uint64_t v = 0;
  const uint64_t lim = neg ? (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1)
                           : static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    uint64_t d = static_cast<uint64_t>(s[i] - '0');
    if (v > (lim - d) / 10) return false;
    v = v * 10 + d;
  }
  if (neg) {
    out = (v == static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1)
              ? std::numeric_limits<int64_t>::min()
              : -static_cast<int64_t>(v);
  } else {
    out = static_cast<int64_t>(v);
  }
  return true;
}

// Non-negative decimal, digits only.
bool parse_udec(std::string_view s, uint64_t& out) {
  int64_t v = 0;
  if (s.empty() || s[0] == '+' || s[0] == '-') return false;
  if (!parse_dec(s, v) || v < 0) return false;
  out = static_cast<uint64_t>(v);
  return true;
}

// A pax time "sec[.frac]" as Go parses it; result normalised so that 0 <= nsec < 1e9.
bool parse_pax_time(std::string_view s, int64_t& sec, uint32_t& nsec) {
  size_t dot = s.find('.');
  std::string_view ss = s.substr(0, dot);
  std::string_view sn = dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1);
  int64_t secs = 0;
  if (!parse_dec(ss, secs)) return false;
  uint32_t ns = 0;
  for (size_t i = 0; i < sn.size(); ++i) {
    if (sn[i] < '0' || sn[i] > '9') return false;
  }
  for (size_t i = 0; i < 9; ++i) {
    ns = ns * 10 + (i < sn.size() ? static_cast<uint32_t>(sn[i] - '0') : 0);
  }
  if (!ss.empty() && ss[0] == '-' && ns != 0) {
    if (secs == std::numeric_limits<int64_t>::min()) return false;
    secs -= 1;
    ns = 1000000000u - ns;
  }
  sec = secs;
  nsec = ns;
  return true;
}

struct PaxRecord {
  std::string key, value;
  uint64_t off = 0;  // stream offset of the record
};

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// Parse the records of one 'x'/'g' header ("%d %s=%s\n" each), defensively.
void parse_pax(const std::string& d, uint64_t off0, std::vector<PaxRecord>& out) {
  out.clear();
  size_t sparse_pairs = 0;  // GNU.sparse.offset / numbytes alternate, starting with offset
  size_t i = 0;
  while (i < d.size()) {
    const size_t rem = d.size() - i;
    size_t j = i;
    uint64_t n = 0;
    while (j < d.size() && d[j] != ' ') {
      if (d[j] < '0' || d[j] > '9') fail(off0 + j, "pax record length is not a decimal number");
      n = n * 10 + static_cast<uint64_t>(d[j] - '0');
      if (n > rem) fail(off0 + i, "pax record length runs past the end of the pax header data");
      ++j;
    }
    if (j == d.size()) fail(off0 + i, "pax record without a space after its length");
    if (j == i) fail(off0 + i, "pax record with an empty length");
    const size_t digits = j - i;
    if (n < 5 || n <= digits + 1) fail(off0 + i, "pax record length too small");
    const size_t end = i + static_cast<size_t>(n);  // exclusive; n <= rem
    if (d[end - 1] != '\n') fail(off0 + end - 1, "pax record does not end with a newline");
    std::string_view body(d.data() + j + 1, end - 1 - (j + 1));
    size_t eq = body.find('=');
    if (eq == std::string_view::npos) fail(off0 + i, "pax record without '='");
    std::string_view key = body.substr(0, eq), value = body.substr(eq + 1);
    if (key.empty()) fail(off0 + i, "pax record with an empty keyword");
    if (key == "path" || key == "linkpath" || key == "uname" || key == "gname" ||
        key == "GNU.sparse.name") {
      if (has_nul(value)) fail(off0 + i, "NUL byte in pax '" + std::string(key) + "' record");
    } else if (has_nul(key)) {
      fail(off0 + i, "NUL byte in pax keyword");
    }
    if (key == "GNU.sparse.offset" || key == "GNU.sparse.numbytes") {
      const bool want_offset = sparse_pairs % 2 == 0;
      if ((key == "GNU.sparse.offset") != want_offset ||
          value.find(',') != std::string_view::npos)
        fail(off0 + i, "misordered GNU.sparse.offset/numbytes records");
      ++sparse_pairs;
    }
    out.push_back(PaxRecord{std::string(key), std::string(value), off0 + i});
    i = end;
  }
}

bool is_global_key(std::string_view k) {
  return k == "mtime" || k == "uid" || k == "gid" || k == "uname" || k == "gname" ||
         k == "atime" || k == "ctime" || k.substr(0, 13) == "SCHILY.xattr.";
}

bool header_only(char tf) { return tf >= '1' && tf <= '6'; }
bool regular_tf(char tf) { return tf == '0' || tf == '\0' || tf == '7'; }

// The fields of one header block.
struct Header {
  Fmt fmt = Fmt::V7;
  char tf = 0;
  std::string name, linkname, uname, gname;
  int64_t mode = 0, uid = 0, gid = 0, size = 0, mtime = 0, devmajor = 0, devminor = 0;
};

Header parse_header(const uint8_t* b, uint64_t off) {
  Header h;
  h.fmt = get_format(b);
  h.tf = static_cast<char>(b[156]);
  auto num = [&](size_t pos, size_t len, const char* what) {
    int64_t v = 0;
    if (!parse_numeric(b + pos, len, v)) fail(off + pos, std::string("invalid ") + what + " field");
    return v;
  };
  h.name = field_str(b, 100);
  h.mode = num(100, 8, "mode");
  h.uid = num(108, 8, "uid");
  h.gid = num(116, 8, "gid");
  h.size = num(124, 12, "size");
  if (h.size < 0) fail(off + 124, "negative size field");
  if (static_cast<uint64_t>(h.size) > kMaxSize) fail(off + 124, "size field too large");
  h.mtime = num(136, 12, "mtime");
  h.linkname = field_str(b + 157, 100);
  if (h.fmt != Fmt::V7) {
    h.uname = field_str(b + 265, 32);
    h.gname = field_str(b + 297, 32);
    h.devmajor = num(329, 8, "devmajor");
    h.devminor = num(337, 8, "devminor");
    std::string prefix;
    if (h.fmt == Fmt::Ustar) {
      prefix = field_str(b + 345, 155);
    } else if (h.fmt == Fmt::Star) {
      prefix = field_str(b + 345, 131);
      num(476, 12, "atime");
      num(488, 12, "ctime");
    } else {  // GNU: atime/ctime where ustar has its prefix
      int64_t dummy = 0;
      bool ok = (b[345] == 0 || parse_numeric(b + 345, 12, dummy)) &&
                (b[357] == 0 || parse_numeric(b + 357, 12, dummy));
      if (!ok) {
        // Files from the pre-Go 1.8 Writer put a ustar prefix there (invalid-go17.tar);
        // Go reads it back as a prefix when it is ASCII, and so do we.
        std::string p = field_str(b + 345, 155);
        if (std::all_of(p.begin(), p.end(), [](char c) { return (c & 0x80) == 0; })) prefix = p;
      }
    }
    if (!prefix.empty()) h.name = prefix + "/" + h.name;
  }
  return h;
}

void add_checked(uint64_t& acc, uint64_t v, uint64_t off, const char* what) {
  if (__builtin_add_overflow(acc, v, &acc)) fail(off, what);
}

}  // namespace

struct Scanner::Impl {
  enum class St { Header, ExtData, ExtPad, SparseExt, Lookahead, Map10, Data, Trailer };

  ScanHandler& h;
  Limits lim;
  St st = St::Header;
  uint64_t fed = 0;  // bytes fed (offset of the next input byte)
  uint64_t n_entries = 0;
  bool eoa = false;

  uint8_t blk[kBlock];
  size_t blk_len = 0;
  uint64_t blk_off = 0;  // stream offset of blk[0]

  // Pending extension headers (since the last entry).
  bool pend_any = false;
  uint64_t pend_off = 0;
  bool have_x = false, have_L = false, have_K = false;
  std::vector<PaxRecord> xrec;
  std::string long_name, long_link;

  // Global pax records (restricted to is_global_key), with their total size.
  std::map<std::string, std::string> globals;
  uint64_t globals_bytes = 0;

  // Extension header being read.
  char ext_tf = 0;
  uint64_t ext_off = 0, ext_size = 0, ext_pad = 0;
  std::string ext_buf;

  // Entry being built / streamed.
  Entry cur;
  uint64_t cur_off = 0;
  uint64_t declared_size = 0;  // size after overrides
  uint64_t map_area = 0;       // GNU sparse 1.0: bytes of map + its padding
  // Sparse 1.0 map parser.
  uint64_t map_tokens_needed = 1, map_tokens_done = 0, map_cur = 0;
  bool map_cur_digit = false, map_done = false;
  SparseFragment map_pending;
  // Data phase.
  uint64_t pay_left = 0, raw_data_left = 0, pad_left = 0;
  bool need_end = false;

  Impl(ScanHandler& handler, Limits l) : h(handler), lim(l) {}

  // ---- input dispatch -------------------------------------------------------------------

  void feed(const uint8_t* p, size_t n) {
    while (n > 0) {
      size_t used = step(p, n);
      p += used;
      n -= used;
      fed += used;
    }
  }

  // Consumes a prefix of [p, p+n) (at least one byte) in the current state.
  size_t step(const uint8_t* p, size_t n) {
    switch (st) {
      case St::Header:
      case St::SparseExt:
      case St::Lookahead: {
        if (blk_len == 0) blk_off = fed;
        size_t k = std::min(n, kBlock - blk_len);
        std::memcpy(blk + blk_len, p, k);
        blk_len += k;
        if (blk_len == kBlock) {
          blk_len = 0;
          if (st == St::Header)
            on_header_block();
          else if (st == St::SparseExt)
            on_sparse_ext_block();
          else
            on_lookahead_block();
        }
        return k;
      }
      case St::ExtData: {
        size_t k = static_cast<size_t>(std::min<uint64_t>(n, ext_size - ext_buf.size()));
        ext_buf.append(reinterpret_cast<const char*>(p), k);
        h.on_raw(p, k);
        if (ext_buf.size() == ext_size) ext_data_done();
        return k;
      }
      case St::ExtPad: {
        size_t k = static_cast<size_t>(std::min<uint64_t>(n, ext_pad));
        h.on_raw(p, k);
        ext_pad -= k;
        if (ext_pad == 0) st = St::Header;
        return k;
      }
      case St::Map10:
        return map_bytes(p, n);
      case St::Data:
        return data_bytes(p, n);
      case St::Trailer:
        h.on_raw(p, n);
        return n;
    }
    return n;  // unreachable
  }

  // ---- headers --------------------------------------------------------------------------

  void on_header_block() {
    const uint64_t off = blk_off;
    if (is_zero_block(blk)) {
      if (pend_any)
        fail(off, "end-of-archive block after an extension header at offset " +
                      std::to_string(pend_off) + " that no entry follows");
      h.on_raw(blk, kBlock);
      eoa = true;
      st = St::Trailer;
      return;
    }
    if (!checksum_ok(blk)) fail(off, "invalid header checksum (not a tar header)");
    Header hd = parse_header(blk, off);
    h.on_raw(blk, kBlock);
    switch (hd.tf) {
      case 'x':
      case 'g':
      case 'L':
      case 'K':
        start_ext(hd, off);
        return;
      default:
        start_entry(hd, off);
    }
  }

  void start_ext(const Header& hd, uint64_t off) {
    const uint64_t size = static_cast<uint64_t>(hd.size);
    if (size > lim.max_extension_size) {
      if (hd.tf == 'x' || hd.tf == 'g')
        fail(off, "pax header too large (" + std::to_string(size) + " bytes, limit " +
                      std::to_string(lim.max_extension_size) + ")");
      fail(off, std::string("GNU long ") + (hd.tf == 'L' ? "name" : "link") + " too large (" +
                    std::to_string(size) + " bytes, limit " +
                    std::to_string(lim.max_extension_size) + ")");
    }
    if ((hd.tf == 'L' || hd.tf == 'K') && size > lim.max_name_size + 1)  // + its final NUL
      fail(off, std::string("GNU long ") + (hd.tf == 'L' ? "name" : "link") + " too long (" +
                    std::to_string(size) + " bytes, limit " + std::to_string(lim.max_name_size) + ")");
    if (hd.tf == 'g' && pend_any)
      fail(off, "pax global header between an extension header at offset " +
                    std::to_string(pend_off) + " and its entry");
    ext_tf = hd.tf;
    ext_off = off;
    ext_size = size;
    ext_pad = pad_of(size);
    ext_buf.clear();
    ext_buf.reserve(static_cast<size_t>(size));
    if (hd.tf != 'g' && !pend_any) {
      pend_any = true;
      pend_off = off;
    }
    if (size == 0)
      ext_data_done();
    else
      st = St::ExtData;
  }

  void ext_data_done() {
    const uint64_t data_off = ext_off + kBlock;
    switch (ext_tf) {
      case 'x':
        parse_pax(ext_buf, data_off, xrec);
        have_x = true;
        break;
      case 'g': {
        std::vector<PaxRecord> recs;
        parse_pax(ext_buf, data_off, recs);
        apply_globals(recs);
        break;
      }
      case 'L':
        long_name = field_str(reinterpret_cast<const uint8_t*>(ext_buf.data()), ext_buf.size());
        have_L = true;
        break;
      case 'K':
        long_link = field_str(reinterpret_cast<const uint8_t*>(ext_buf.data()), ext_buf.size());
        have_K = true;
        break;
    }
    ext_buf.clear();
    ext_buf.shrink_to_fit();
    st = ext_pad ? St::ExtPad : St::Header;
  }

  void apply_globals(const std::vector<PaxRecord>& recs) {
    for (const auto& r : recs) {
      if (!is_global_key(r.key)) continue;
      auto it = globals.find(r.key);
      if (it != globals.end()) {
        globals_bytes -= it->first.size() + it->second.size();
        globals.erase(it);
      }
      if (r.value.empty()) continue;  // an empty value clears the global record
      Entry scratch;
      apply_record(scratch, r.key, r.value, r.off, nullptr);  // validates the value
      globals_bytes += r.key.size() + r.value.size();
      if (globals_bytes > std::min<uint64_t>(kMaxGlobalRecords, lim.max_extension_size))
        fail(r.off, "pax global records too large (limit " +
                        std::to_string(std::min<uint64_t>(kMaxGlobalRecords, lim.max_extension_size)) +
                        " bytes)");
      globals.emplace(r.key, r.value);
    }
  }

  // Applies one non-sparse pax record to e. size (when non-null) receives a 'size' record.
  static void apply_record(Entry& e, const std::string& k, const std::string& v, uint64_t off,
                           uint64_t* size) {
    if (k == "path") {
      e.name = v;
    } else if (k == "linkpath") {
      e.linkname = v;
    } else if (k == "uname") {
      e.uname = v;
    } else if (k == "gname") {
      e.gname = v;
    } else if (k == "uid" || k == "gid") {
      int64_t id = 0;
      if (!parse_dec(v, id)) fail(off, "invalid pax " + k + " record");
      (k == "uid" ? e.uid : e.gid) = id;
    } else if (k == "mtime") {
      if (!parse_pax_time(v, e.mtime_sec, e.mtime_nsec)) fail(off, "invalid pax mtime record");
    } else if (k == "atime" || k == "ctime") {
      int64_t s = 0;
      uint32_t ns = 0;
      if (!parse_pax_time(v, s, ns)) fail(off, "invalid pax " + k + " record");
    } else if (k == "size") {
      int64_t sz = 0;
      if (!parse_dec(v, sz) || sz < 0 || static_cast<uint64_t>(sz) > kMaxSize)
        fail(off, "invalid pax size record");
      if (size) *size = static_cast<uint64_t>(sz);
    } else if (k.compare(0, 13, "SCHILY.xattr.") == 0) {
      std::string name = k.substr(13);
      if (name.empty()) fail(off, "pax SCHILY.xattr record with an empty attribute name");
      e.xattrs.emplace_back(std::move(name), v);  // duplicates: see dedupe_xattrs
    }
  }

  // Keeps one value per attribute name (the last one), at its first position. Linear.
  static void dedupe_xattrs(Entry& e) {
    if (e.xattrs.size() < 2) return;
    std::unordered_map<std::string_view, size_t> first;  // views into out's names
    std::vector<std::pair<std::string, std::string>> out;
    out.reserve(e.xattrs.size());  // never reallocates below: the views stay valid
    for (auto& kv : e.xattrs) {
      auto it = first.find(kv.first);
      if (it == first.end()) {
        out.push_back(std::move(kv));
        first.emplace(out.back().first, out.size() - 1);
      } else {
        out[it->second].second = std::move(kv.second);
      }
    }
    e.xattrs = std::move(out);
  }

  void clear_pending() {
    pend_any = false;
    have_x = have_L = have_K = false;
    xrec.clear();
    long_name.clear();
    long_link.clear();
  }

  void start_entry(const Header& hd, uint64_t off) {
    Entry e;
    e.typeflag = hd.tf;
    e.name = hd.name;
    e.linkname = hd.linkname;
    e.mode = static_cast<uint32_t>(hd.mode & 07777);
    e.uid = hd.uid;
    e.gid = hd.gid;
    e.uname = hd.uname;
    e.gname = hd.gname;
    e.mtime_sec = hd.mtime;
    if (hd.tf == '3' || hd.tf == '4') {
      if (hd.devmajor < 0 || hd.devmajor > 0xffffffffLL || hd.devminor < 0 ||
          hd.devminor > 0xffffffffLL)
        fail(off + 329, "device number out of range");
      e.devmajor = static_cast<uint32_t>(hd.devmajor);
      e.devminor = static_cast<uint32_t>(hd.devminor);
    }
    uint64_t size = static_cast<uint64_t>(hd.size);
    const uint64_t pax_off = pend_any ? pend_off : off;

    // Global records, unless this entry's 'x' header has a record with the same keyword
    // (an empty value there deletes the global value for this entry).
    std::set<std::string_view> local_keys;
    if (have_x)
      for (const auto& r : xrec) local_keys.insert(r.key);
    for (const auto& [k, v] : globals)
      if (!local_keys.count(k)) apply_record(e, k, v, off, nullptr);

    // GNU sparse pax records.
    std::string sp_major, sp_minor, sp_name, sp_size, sp_realsize, sp_numblocks, sp_map;
    bool sp_has_major = false, sp_has_minor = false;
    std::string sp00;  // GNU.sparse.offset/numbytes pairs, joined like a 0.1 map
    if (have_x) {
      for (const auto& r : xrec) {
        const std::string& k = r.key;
        const std::string& v = r.value;
        if (k == "GNU.sparse.offset" || k == "GNU.sparse.numbytes") {
          if (!sp00.empty()) sp00 += ',';
          sp00 += v;
          continue;
        }
        if (v.empty()) continue;  // keep the header's value
        if (k.compare(0, 11, "GNU.sparse.") == 0) {
          if (k == "GNU.sparse.major") sp_major = v, sp_has_major = true;
          else if (k == "GNU.sparse.minor") sp_minor = v, sp_has_minor = true;
          else if (k == "GNU.sparse.name") sp_name = v;
          else if (k == "GNU.sparse.size") sp_size = v;
          else if (k == "GNU.sparse.realsize") sp_realsize = v;
          else if (k == "GNU.sparse.numblocks") sp_numblocks = v;
          else if (k == "GNU.sparse.map") sp_map = v;
          continue;
        }
        apply_record(e, k, v, r.off, &size);
      }
      if (!sp00.empty()) sp_map = sp00;
    }
    dedupe_xattrs(e);
    if (have_L && !long_name.empty()) e.name = long_name;
    if (have_K && !long_link.empty()) e.linkname = long_link;
    if ((hd.tf == '3' || hd.tf == '4') && (hd.devmajor > kMaxDevMajor || hd.devminor > kMaxDevMinor)) {
      // Linux's device numbers have a 12-bit major and a 20-bit minor (mknod(2) takes a
      // 32-bit dev_t; glibc refuses a larger one with EINVAL): such a node can exist on no
      // Linux host, so it is an archive error on every driver, not an EINVAL from mknod on
      // the one driver that extracts.
      const std::string shown = e.name.size() > 256 ? e.name.substr(0, 256) + "..." : e.name;
      fail(off + 329, "device number " + std::to_string(hd.devmajor) + ":" + std::to_string(hd.devminor) +
                          " of '" + shown + "' cannot be represented by the kernel (major at most " +
                          std::to_string(kMaxDevMajor) + ", minor at most " + std::to_string(kMaxDevMinor) + ")");
    }
    const bool dir_by_slash = regular_tf(hd.tf) && !e.name.empty() && e.name.back() == '/';

    // Which pax sparse format, if any (same decision as Go).
    enum class Pax { None, V0x, V10 } pax = Pax::None;
    if (hd.tf != 'S') {
      if (sp_major == "0" && (sp_minor == "0" || sp_minor == "1"))
        pax = Pax::V0x;
      else if (sp_major == "1" && sp_minor == "0")
        pax = Pax::V10;
      else if (sp_has_major || sp_has_minor)
        fail(pax_off, "unsupported GNU sparse format version " + sp_major + "." + sp_minor);
      else if (!sp_map.empty())
        pax = Pax::V0x;
    }

    cur = std::move(e);
    cur_off = off;
    declared_size = size;
    map_area = 0;
    Entry& c = cur;

    if (pax != Pax::None) {
      if (!regular_tf(hd.tf) || dir_by_slash)
        fail(pax_off, "GNU sparse records on a non-regular entry");
      c.kind = EntryKind::Sparse;
      if (!sp_name.empty()) c.name = sp_name;
      const std::string& rs = !sp_size.empty() ? sp_size : sp_realsize;
      uint64_t real = size;
      if (!rs.empty() && (!parse_udec(rs, real) || real > kMaxSize))
        fail(pax_off, "invalid GNU sparse real size");
      c.real_size = real;
      c.data_size = size;
      if (pax == Pax::V0x) {
        uint64_t nblocks = 0;
        if (!parse_udec(sp_numblocks, nblocks)) fail(pax_off, "invalid GNU.sparse.numblocks");
        if (nblocks > lim.max_sparse_fragments) fail(pax_off, "too many sparse fragments");
        std::vector<SparseFragment> frags;
        frags.reserve(static_cast<size_t>(nblocks));
        size_t pos = 0, count = 0;
        SparseFragment f;
        while (!sp_map.empty() && pos <= sp_map.size()) {
          size_t comma = sp_map.find(',', pos);
          if (comma == std::string::npos) comma = sp_map.size();
          uint64_t v = 0;
          if (!parse_udec(std::string_view(sp_map).substr(pos, comma - pos), v))
            fail(pax_off, "invalid number in GNU sparse map");
          if (count / 2 >= nblocks) fail(pax_off, "GNU sparse map longer than GNU.sparse.numblocks");
          if (count % 2 == 0) {
            f.offset = v;
          } else {
            f.length = v;
            frags.push_back(f);
          }
          ++count;
          pos = comma + 1;
        }
        if (count != 2 * nblocks) fail(pax_off, "GNU sparse map does not match GNU.sparse.numblocks");
        c.sparse = std::move(frags);
        finish_sparse(size, true);
        return;
      }
      // 1.0: the map is at the start of the data area.
      map_tokens_needed = 1;
      map_tokens_done = 0;
      map_cur = 0;
      map_cur_digit = false;
      map_done = false;
      if (size == 0) fail(off, "GNU sparse 1.0 entry without room for its sparse map");
      st = St::Map10;
      return;
    }

    if (hd.tf == 'S') {
      if (hd.fmt != Fmt::Gnu) fail(off, "old GNU sparse entry ('S') in a non-GNU header");
      c.kind = EntryKind::Sparse;
      int64_t real = 0;
      if (!parse_numeric(blk + 483, 12, real) || real < 0 || static_cast<uint64_t>(real) > kMaxSize)
        fail(off + 483, "invalid GNU sparse real size");
      c.real_size = static_cast<uint64_t>(real);
      c.data_size = size;
      parse_old_sparse_entries(blk + 386, 4, off + 386);
      if (blk[482] != 0) {
        st = St::SparseExt;
        return;
      }
      finish_sparse(size, true);
      return;
    }

    if (header_only(hd.tf)) {
      static const EntryKind kinds[] = {EntryKind::Hardlink, EntryKind::Symlink,
                                        EntryKind::CharDev,  EntryKind::BlockDev,
                                        EntryKind::Directory, EntryKind::Fifo};
      c.kind = kinds[hd.tf - '1'];
    } else if (regular_tf(hd.tf)) {
      c.kind = dir_by_slash ? EntryKind::Directory : EntryKind::Regular;
    } else {
      c.kind = EntryKind::Other;
    }

    if (c.kind == EntryKind::Regular) {
      c.data_size = c.payload_size = c.real_size = size;
      emit_entry(size, 0, pad_of(size));
    } else if (c.kind == EntryKind::Other) {
      c.data_size = size;
      emit_entry(0, size, pad_of(size));
    } else if (size == 0) {
      emit_entry(0, 0, 0);
    } else {
      // Header-only kind with a non-zero size: look at the next block first.
      st = St::Lookahead;
    }
  }

  void parse_old_sparse_entries(const uint8_t* p, size_t count, uint64_t off) {
    for (size_t i = 0; i < count; ++i) {
      const uint8_t* s = p + i * 24;
      if (s[0] == 0) break;  // GNU and BSD tar stop at the first empty slot
      int64_t o = 0, l = 0;
      if (!parse_numeric(s, 12, o) || !parse_numeric(s + 12, 12, l) || o < 0 || l < 0)
        fail(off + i * 24, "invalid GNU sparse map entry");
      if (cur.sparse.size() >= lim.max_sparse_fragments) fail(off, "too many sparse fragments");
      cur.sparse.push_back(SparseFragment{static_cast<uint64_t>(o), static_cast<uint64_t>(l)});
    }
  }

  void on_sparse_ext_block() {
    h.on_raw(blk, kBlock);
    parse_old_sparse_entries(blk, 21, blk_off);
    if (blk[504] != 0) return;  // another extension block follows
    finish_sparse(declared_size, true);
  }

  // Validates cur.sparse against cur.real_size and the stored bytes available for them,
  // then reports the entry. exact: the stored size must equal the fragments' total.
  void finish_sparse(uint64_t stored, bool exact) {
    uint64_t sum = 0, prev_end = 0;
    for (const auto& f : cur.sparse) {
      uint64_t end = 0;
      if (__builtin_add_overflow(f.offset, f.length, &end) || end > kMaxSize)
        fail(cur_off, "sparse fragment overflows");
      if (end > cur.real_size) fail(cur_off, "sparse fragment beyond the file's real size");
      if (f.offset < prev_end) fail(cur_off, "sparse fragments overlap or are out of order");
      prev_end = end;
      add_checked(sum, f.length, cur_off, "sparse fragments overflow");
    }
    if (exact ? sum != stored : sum > stored)
      fail(cur_off, "sparse fragments hold " + std::to_string(sum) + " bytes but the entry stores " +
                        std::to_string(stored));
    cur.payload_size = sum;
    emit_entry(sum, stored - sum, pad_of(cur.data_size));
  }

  void on_lookahead_block() {
    // The block after a header-only entry whose size field is non-zero.
    const bool next_is_header = is_zero_block(blk) || checksum_ok(blk);
    if (next_is_header) {
      cur.data_size = 0;
      emit_entry(0, 0, 0);
      on_header_block();  // st is Header; blk/blk_off still describe the block
      return;
    }
    cur.data_size = declared_size;
    emit_entry(0, declared_size, pad_of(declared_size));
    // The 512 bytes already read are the start of that data area.
    data_bytes(blk, kBlock);
  }

  void emit_entry(uint64_t payload, uint64_t raw_data, uint64_t pad) {
    if (cur.name.size() > lim.max_name_size)
      fail(cur_off, "tar entry name is longer than " + std::to_string(lim.max_name_size) + " bytes (" +
                        std::to_string(cur.name.size()) + ")");
    if (cur.linkname.size() > lim.max_name_size)
      fail(cur_off, "tar entry link target is longer than " + std::to_string(lim.max_name_size) + " bytes (" +
                        std::to_string(cur.linkname.size()) + ")");
    clear_pending();
    ++n_entries;
    h.on_entry(cur);
    pay_left = payload;
    raw_data_left = raw_data;
    pad_left = pad;
    need_end = cur.has_payload();
    if (need_end && pay_left == 0) {
      need_end = false;
      h.on_entry_end();
    }
    st = (pay_left || raw_data_left || pad_left) ? St::Data : St::Header;
  }

  // ---- data areas -----------------------------------------------------------------------

  size_t data_bytes(const uint8_t* p, size_t n) {
    size_t used = 0;
    while (used < n && st == St::Data) {
      if (pay_left) {
        size_t k = static_cast<size_t>(std::min<uint64_t>(n - used, pay_left));
        h.on_payload(p + used, k);
        pay_left -= k;
        used += k;
        if (pay_left == 0 && need_end) {
          need_end = false;
          h.on_entry_end();
        }
      } else if (raw_data_left || pad_left) {
        uint64_t left = raw_data_left + pad_left;
        size_t k = static_cast<size_t>(std::min<uint64_t>(n - used, left));
        h.on_raw(p + used, k);
        uint64_t from_data = std::min<uint64_t>(k, raw_data_left);
        raw_data_left -= from_data;
        pad_left -= (k - from_data);
        used += k;
      }
      if (!pay_left && !raw_data_left && !pad_left) st = St::Header;
    }
    return used;
  }

  // GNU sparse 1.0 map: decimal numbers, one per line (count, then offset/length pairs),
  // padded with anything to the next block boundary. All raw.
  size_t map_bytes(const uint8_t* p, size_t n) {
    size_t i = 0;
    for (; i < n; ++i) {
      if (map_done) {
        // Skipping the rest of the map's last block.
        if (map_area % kBlock == 0) break;
        ++map_area;
        continue;
      }
      if (map_area >= declared_size) fail(fed + i, "GNU sparse map runs past the entry's data");
      const uint8_t c = p[i];
      ++map_area;
      if (c == '\n') {
        if (!map_cur_digit) fail(fed + i, "empty number in GNU sparse map");
        if (map_tokens_done == 0) {
          if (map_cur > lim.max_sparse_fragments) fail(fed + i, "too many sparse fragments");
          map_tokens_needed = 1 + 2 * map_cur;
          cur.sparse.reserve(static_cast<size_t>(map_cur));
        } else if (map_tokens_done % 2 == 1) {
          map_pending.offset = map_cur;
        } else {
          map_pending.length = map_cur;
          cur.sparse.push_back(map_pending);
        }
        ++map_tokens_done;
        map_cur = 0;
        map_cur_digit = false;
        if (map_tokens_done == map_tokens_needed) {
          map_done = true;
          if (map_area + pad_of(map_area) > declared_size)
            fail(fed + i, "GNU sparse map runs past the entry's data");
        }
      } else if (c >= '0' && c <= '9') {
        if (map_cur > (kMaxSize - 9) / 10) fail(fed + i, "number too large in GNU sparse map");
        map_cur = map_cur * 10 + (c - '0');
        map_cur_digit = true;
      } else {
        fail(fed + i, "invalid character in GNU sparse map");
      }
    }
    h.on_raw(p, i);
    if (map_done && map_area % kBlock == 0) {
      finish_sparse(declared_size - map_area, false);
      // finish_sparse computed pad from data_size, which includes the map area: correct.
    }
    return i;
  }

  // ---- end of input ---------------------------------------------------------------------

  void finish() {
    switch (st) {
      case St::Trailer:
        return;
      case St::Header:
        if (blk_len != 0)
          fail(blk_off, "input ends inside a header block (" + std::to_string(blk_len) +
                            " of 512 bytes)");
        if (pend_any)
          fail(pend_off, "input ends after an extension header that no entry follows");
        return;
      case St::Lookahead:
        if (blk_len == 0) {  // the header-only entry was the last thing in the stream
          cur.data_size = 0;
          emit_entry(0, 0, 0);
          return;
        }
        fail(blk_off, "input ends inside a header block or entry data");
      case St::ExtData:
      case St::ExtPad:
        fail(fed, "input ends inside extension header data (header at offset " +
                      std::to_string(ext_off) + ")");
      case St::SparseExt:
        fail(fed, "input ends inside a GNU sparse extension block");
      case St::Map10:
        fail(fed, "input ends inside a GNU sparse map");
      case St::Data:
        if (pay_left || raw_data_left)
          fail(fed, "input ends inside the data of the entry at offset " + std::to_string(cur_off) +
                        " (" + std::to_string(pay_left + raw_data_left) + " bytes missing)");
        // Only padding is missing: accepted (Go reads such archives).
        return;
    }
  }
};

Scanner::Scanner(ScanHandler& handler, Limits limits) : impl_(new Impl(handler, limits)) {}
Scanner::~Scanner() { delete impl_; }

void Scanner::feed(const uint8_t* data, size_t len) { impl_->feed(data, len); }
void Scanner::finish() { impl_->finish(); }
uint64_t Scanner::offset() const { return impl_->fed; }
uint64_t Scanner::entries() const { return impl_->n_entries; }
bool Scanner::end_of_archive() const { return impl_->eoa; }

}  // namespace rolayer::tar
