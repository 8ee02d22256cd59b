// SPDX-License-Identifier: Apache-2.0
#include "store/images.h"

#include <ctime>

#include "core/error.h"
#include "store/state.h"

namespace rolayer {

namespace {

const char* kImagesSchema = R"SQL(
CREATE TABLE IF NOT EXISTS image_blobs (digest TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS images (
  name TEXT PRIMARY KEY,
  top_chain_id TEXT NOT NULL,
  manifest_media_type TEXT NOT NULL,
  manifest_digest TEXT NOT NULL,
  config_digest TEXT NOT NULL,
  created INTEGER NOT NULL
);
)SQL";

std::string sha256(const std::string& data) {
  Hasher h;
  h.update(data.data(), data.size());
  return h.finish().str();
}

void check_name(const std::string& name) {
  if (name.empty() || name.size() > Images::kMaxName)
    throw Error(Code::Inval, "an image name must have 1 to " + std::to_string(Images::kMaxName) + " bytes");
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f) throw Error(Code::Inval, "an image name must not hold control characters");
}

void gc_blobs(sql::Db& db) {
  sql::Stmt(db,
            "DELETE FROM image_blobs WHERE digest NOT IN (SELECT manifest_digest FROM images UNION "
            "SELECT config_digest FROM images)")
      .run();
}

}  // namespace

// The store's state, reached as a friend of Store (the tables are the store's; its mutex
// guards every use of the connection).
struct ImagesAccess {
  static StoreState& state(Store& s) { return *s.st_; }
};

void Images::put(Store& s, const std::string& name, const std::string& top, const std::string& mt,
                 const std::string& manifest, const std::string& config) {
  check_name(name);
  Digest::parse(top);
  if (mt.empty() || mt.size() > 255) throw Error(Code::Inval, "the manifest media type must have 1 to 255 bytes");
  if (manifest.size() > kMaxBlob || config.size() > kMaxBlob)
    throw Error(Code::Inval, "a manifest or config larger than 4 MiB");
  if (manifest.empty() || config.empty()) throw Error(Code::Inval, "an empty manifest or config");
  std::string md = sha256(manifest), cd = sha256(config);
  // The image's reference on its top layer first: a crash after it leaves an extra reference
  // (nothing lost), never an image whose layers may go.
  s.retain(top);
  std::string old_top;
  try {
    StoreState& st = ImagesAccess::state(s);
    std::lock_guard<std::mutex> g(st.mu);
    st.check_open();
    st.db->exec(kImagesSchema);
    sql::Transaction tx(*st.db);
    {
      sql::Stmt q(*st.db, "SELECT top_chain_id FROM images WHERE name = ?");
      q.bind(1, name);
      if (q.step()) old_top = q.text(0);
    }
    sql::Stmt ins(*st.db, "INSERT OR IGNORE INTO image_blobs (digest, data) VALUES (?, ?)");
    ins.bind(1, md).bind_blob(2, manifest.data(), manifest.size()).run();
    sql::Stmt ins2(*st.db, "INSERT OR IGNORE INTO image_blobs (digest, data) VALUES (?, ?)");
    ins2.bind(1, cd).bind_blob(2, config.data(), config.size()).run();
    sql::Stmt(*st.db,
              "INSERT OR REPLACE INTO images (name, top_chain_id, manifest_media_type, manifest_digest, config_digest, "
              "created) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(1, name)
        .bind(2, top)
        .bind(3, mt)
        .bind(4, md)
        .bind(5, cd)
        .bind(6, static_cast<int64_t>(std::time(nullptr)))
        .run();
    gc_blobs(*st.db);
    tx.commit();
  } catch (...) {
    try {
      s.unretain(top);
    } catch (...) {
    }
    throw;
  }
  if (!old_top.empty()) {
    try {
      s.unretain(old_top);
    } catch (const Error& e) {
      if (e.code() != Code::NotFound && e.code() != Code::NotRetained) throw;
    }
  }
}

ImageRecord Images::get(Store& s, const std::string& name) {
  check_name(name);
  StoreState& st = ImagesAccess::state(s);
  std::lock_guard<std::mutex> g(st.mu);
  st.check_open();
  st.db->exec(kImagesSchema);
  sql::Stmt q(*st.db,
              "SELECT i.top_chain_id, i.manifest_media_type, i.manifest_digest, m.data, i.config_digest, c.data, i.created "
              "FROM images i JOIN image_blobs m ON m.digest = i.manifest_digest "
              "JOIN image_blobs c ON c.digest = i.config_digest WHERE i.name = ?");
  q.bind(1, name);
  if (!q.step()) throw Error(Code::NotFound, "no such image: " + name);
  ImageRecord r;
  r.name = name;
  r.top_chain_id = q.text(0);
  r.manifest_media_type = q.text(1);
  r.manifest_digest = q.text(2);
  r.manifest = q.blob(3);
  r.config_digest = q.text(4);
  r.config = q.blob(5);
  r.created = q.int64(6);
  if (sha256(r.manifest) != r.manifest_digest || sha256(r.config) != r.config_digest)
    throw Error(Code::Corrupt, "the stored manifest or config of image " + name + " does not match its digest");
  return r;
}

std::vector<std::string> Images::list(Store& s) {
  StoreState& st = ImagesAccess::state(s);
  std::lock_guard<std::mutex> g(st.mu);
  st.check_open();
  st.db->exec(kImagesSchema);
  std::vector<std::string> out;
  sql::Stmt q(*st.db, "SELECT name FROM images ORDER BY name");
  while (q.step()) out.push_back(q.text(0));
  return out;
}

std::vector<Removed> Images::remove(Store& s, const std::string& name) {
  check_name(name);
  std::string top;
  {
    StoreState& st = ImagesAccess::state(s);
    std::lock_guard<std::mutex> g(st.mu);
    st.check_open();
    st.db->exec(kImagesSchema);
    sql::Transaction tx(*st.db);
    sql::Stmt q(*st.db, "SELECT top_chain_id FROM images WHERE name = ?");
    q.bind(1, name);
    if (!q.step()) throw Error(Code::NotFound, "no such image: " + name);
    top = q.text(0);
    sql::Stmt(*st.db, "DELETE FROM images WHERE name = ?").bind(1, name).run();
    gc_blobs(*st.db);
    tx.commit();
  }
  // The image row is gone first: a crash before this leaves an extra reference, nothing lost.
  try {
    return s.unretain(top);
  } catch (const Error& e) {
    if (e.code() != Code::NotFound && e.code() != Code::NotRetained) throw;
    return {};
  }
}

}  // namespace rolayer
