// SPDX-License-Identifier: Apache-2.0
// The registry client: references, credentials, challenges, TLS and transfers over libcurl.
#include "registry.h"

#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <nlohmann/json.hpp>

#include "blob.h"

namespace cli {

using nlohmann::json;

// kMtOciIndex, kMtOciManifest and kMtOciConfig are defined once, with the image readers
// (image_plan.cpp).
const char* const kMtDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
const char* const kMtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
const char* const kMtDockerConfig = "application/vnd.docker.container.image.v1+json";

namespace {

constexpr size_t kMaxManifest = 4u << 20;

bool valid_path_component(const std::string& c) {
  // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
  if (c.empty() || !std::isalnum(static_cast<unsigned char>(c.front())) ||
      !std::isalnum(static_cast<unsigned char>(c.back())))
    return false;
  for (size_t i = 0; i < c.size(); i++) {
    char ch = c[i];
    if (std::islower(static_cast<unsigned char>(ch)) || std::isdigit(static_cast<unsigned char>(ch))) continue;
    if (ch == '.' || ch == '_' || ch == '-') {
      if (ch == '.' && (c[i + 1] == '.' || c[i + 1] == '_' || c[i + 1] == '-')) return false;
      continue;
    }
    return false;
  }
  return true;
}

bool valid_tag(const std::string& t) {
  if (t.empty() || t.size() > 128) return false;
  if (!(std::isalnum(static_cast<unsigned char>(t[0])) || t[0] == '_')) return false;
  for (char ch : t)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '-')) return false;
  return true;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

std::string b64decode(const std::string& in) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r') continue;
    auto p = chars.find(c);
    if (p == std::string::npos) throw CliError(kBadInput, "malformed base64");
    val = (val << 6) + static_cast<int>(p);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xff));
      bits -= 8;
    }
  }
  return out;
}

}  // namespace

std::string base64_encode(const std::string& in) {
  static const char* chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -6;
  for (unsigned char c : in) {
    val = (val << 8) + c;
    bits += 8;
    while (bits >= 0) {
      out.push_back(chars[(val >> bits) & 0x3f]);
      bits -= 6;
    }
  }
  if (bits > -6) out.push_back(chars[((val << 8) >> (bits + 8)) & 0x3f]);
  while (out.size() % 4) out.push_back('=');
  return out;
}

namespace {

std::string url_escape(const std::string& s) {
  std::string out;
  static const char* hex = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

// "Bearer realm="x",service="y"" -> scheme "bearer" and the parameters.
std::string parse_challenge(const std::string& h, std::map<std::string, std::string>* params) {
  size_t i = 0;
  while (i < h.size() && h[i] == ' ') i++;
  size_t s = i;
  while (i < h.size() && h[i] != ' ') i++;
  std::string scheme = lower(h.substr(s, i - s));
  while (i < h.size()) {
    while (i < h.size() && (h[i] == ' ' || h[i] == ',')) i++;
    size_t k = i;
    while (i < h.size() && h[i] != '=' && h[i] != ',') i++;
    std::string key = lower(trim(h.substr(k, i - k)));
    if (i >= h.size() || h[i] != '=') continue;
    i++;
    std::string val;
    if (i < h.size() && h[i] == '"') {
      i++;
      while (i < h.size() && h[i] != '"') {
        if (h[i] == '\\' && i + 1 < h.size()) i++;
        val.push_back(h[i++]);
      }
      i++;
    } else {
      size_t v = i;
      while (i < h.size() && h[i] != ',') i++;
      val = trim(h.substr(v, i - v));
    }
    if (!key.empty()) (*params)[key] = val;
  }
  return scheme;
}

std::string home_dir() {
  const char* h = std::getenv("HOME");
  return h ? h : "";
}

std::string docker_config_file() {
  if (const char* d = std::getenv("DOCKER_CONFIG"); d && *d) return std::string(d) + "/config.json";
  return home_dir() + "/.docker/config.json";
}

// Collects the trusted CAs: the system bundle, then --ca-file, then the *.crt of --cert-dir
// (and of /etc/docker/certs.d/HOST and /etc/containers/certs.d/HOST when they exist).
std::string build_ca_blob(const TransportOptions& o, const std::string& host) {
  std::vector<std::string> files;
  std::vector<std::string> dirs;
  if (!o.cert_dir.empty()) {
    if (!is_directory(o.cert_dir)) usage_error("--cert-dir " + o.cert_dir + ": not a directory");
    dirs.push_back(o.cert_dir);
  }
  for (const char* base : {"/etc/docker/certs.d/", "/etc/containers/certs.d/"})
    if (is_directory(std::string(base) + host)) dirs.push_back(std::string(base) + host);
  if (!o.ca_file.empty()) {
    if (!path_exists(o.ca_file)) throw CliError(kNotFound, "--ca-file " + o.ca_file + ": no such file");
    files.push_back(o.ca_file);
  }
  for (const auto& d : dirs) {
    std::vector<std::string> names;
    if (DIR* dp = ::opendir(d.c_str())) {
      while (struct dirent* de = ::readdir(dp)) {
        std::string n = de->d_name;
        if (n.size() > 4 && n.substr(n.size() - 4) == ".crt") names.push_back(d + "/" + n);
      }
      ::closedir(dp);
    }
    std::sort(names.begin(), names.end());
    files.insert(files.end(), names.begin(), names.end());
  }
  if (files.empty()) return {};
  std::string blob;
  for (const char* sys : {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"})
    if (path_exists(sys)) {
      blob += read_file(sys, 16u << 20) + "\n";
      break;
    }
  for (const auto& f : files) blob += read_file(f, 4u << 20) + "\n";
  return blob;
}

void curl_global() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

void check_json_depth(const std::string& t, const std::string& what) {
  int depth = 0;
  bool in_str = false, esc = false;
  for (char c : t) {
    if (in_str) {
      if (esc) esc = false;
      else if (c == '\\') esc = true;
      else if (c == '"') in_str = false;
      continue;
    }
    if (c == '"') in_str = true;
    else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        throw CliError(kBadInput, what + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
}

std::string printable(const std::string& s) {
  std::string out;
  static const char* hex = "0123456789abcdef";
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

// --- references -------------------------------------------------------------------------------

std::string Reference::str() const {
  std::string s = domain + "/" + repository;
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

std::string Reference::api_host() const {
  if (domain == "docker.io") return mirror.empty() ? "registry-1.docker.io" : mirror;
  return domain;
}

Reference parse_reference(const std::string& in, const std::string& default_tag) {
  std::string s = in;
  for (const char* prefix : {"docker://", "//"})
    if (s.rfind(prefix, 0) == 0) s = s.substr(std::strlen(prefix));
  if (s.empty()) usage_error("empty image reference");
  Reference r;
  if (auto at = s.find('@'); at != std::string::npos) {
    r.digest = s.substr(at + 1);
    s = s.substr(0, at);
    if (!is_digest(r.digest)) usage_error("\"" + in + "\": malformed digest \"" + r.digest + "\" (sha256:<64 hex>)");
  }
  auto slash = s.rfind('/');
  auto colon = s.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    r.tag = s.substr(colon + 1);
    s = s.substr(0, colon);
    if (!valid_tag(r.tag)) usage_error("\"" + in + "\": malformed tag \"" + r.tag + "\"");
  }
  auto first = s.find('/');
  std::string head = first == std::string::npos ? "" : s.substr(0, first);
  if (!head.empty() && (head.find('.') != std::string::npos || head.find(':') != std::string::npos ||
                        head == "localhost" || head != lower(head))) {
    r.domain = head;
    r.repository = s.substr(first + 1);
  } else {
    r.domain = "docker.io";
    r.repository = s;
  }
  if (r.domain == "index.docker.io") r.domain = "docker.io";
  if (r.domain == "docker.io" && r.repository.find('/') == std::string::npos) r.repository = "library/" + r.repository;
  // Validate the domain (host[:port], or [v6]:port) and the path.
  {
    std::string host = r.domain, port;
    if (!host.empty() && host[0] == '[') {
      auto e = host.find(']');
      if (e == std::string::npos) usage_error("\"" + in + "\": malformed registry host \"" + r.domain + "\"");
      port = host.size() > e + 1 && host[e + 1] == ':' ? host.substr(e + 2) : "";
      host = host.substr(1, e - 1);
    } else if (auto c = host.find(':'); c != std::string::npos) {
      port = host.substr(c + 1);
      host = host.substr(0, c);
      if (port.empty()) usage_error("\"" + in + "\": empty port in \"" + r.domain + "\"");
    }
    bool ok = !host.empty();
    for (char ch : host)
      if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '-' || ch == ':')) ok = false;
    for (char ch : port)
      if (!std::isdigit(static_cast<unsigned char>(ch))) ok = false;
    if (!ok) usage_error("\"" + in + "\": malformed registry host \"" + r.domain + "\"");
  }
  if (r.repository.empty() || r.repository.size() > 255)
    usage_error("\"" + in + "\": missing or too long repository name");
  size_t i = 0;
  while (i <= r.repository.size()) {
    size_t j = r.repository.find('/', i);
    if (j == std::string::npos) j = r.repository.size();
    if (!valid_path_component(r.repository.substr(i, j - i)))
      usage_error("\"" + in + "\": invalid repository name \"" + r.repository +
                  "\" (lower-case letters, digits and separators . _ -)");
    i = j + 1;
  }
  if (r.tag.empty() && r.digest.empty()) {
    if (default_tag.empty()) usage_error("\"" + in + "\": needs a tag or a digest");
    r.tag = default_tag;
  }
  return r;
}

bool is_loopback_host(const std::string& hp) {
  std::string host = hp;
  if (!host.empty() && host[0] == '[') {
    host = host.substr(1, host.find(']') - 1);
    return host == "::1";
  }
  host = host.substr(0, host.find(':'));
  if (host == "localhost") return true;
  return host.rfind("127.", 0) == 0;
}

// --- credentials ------------------------------------------------------------------------------

namespace {

bool creds_from(const std::string& file, const std::string& domain, const std::string& repository, Credentials* out) {
  if (file.empty() || !path_exists(file)) return false;
  json j;
  try {
    std::string text = read_file(file, 4u << 20);
    check_json_depth(text, file);
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw CliError(kBadInput, file + ": not valid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("auths") || !j["auths"].is_object()) return false;
  const json& auths = j["auths"];
  std::vector<std::string> keys;
  // containers' auth.json may scope credentials to a namespace or a repository: the most
  // specific first.
  std::string path = domain + "/" + repository;
  while (true) {
    keys.push_back(path);
    auto s = path.rfind('/');
    if (s == std::string::npos || path.substr(0, s) == domain) break;
    path = path.substr(0, s);
  }
  for (const std::string& h : {domain, std::string("https://") + domain, std::string("http://") + domain,
                               std::string("https://") + domain + "/v1/", std::string("https://") + domain + "/v2/"})
    keys.push_back(h);
  if (domain == "docker.io")
    for (const char* k : {"https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"}) keys.push_back(k);
  for (const auto& k : keys) {
    if (!auths.contains(k) || !auths[k].is_object()) continue;
    const json& a = auths[k];
    std::string user, pass;
    if (a.contains("auth") && a["auth"].is_string() && !a["auth"].get<std::string>().empty()) {
      std::string dec;
      try {
        dec = b64decode(a["auth"].get<std::string>());
      } catch (const CliError&) {
        throw CliError(kBadInput, file + ": the \"auth\" of " + k + " is not valid base64");
      }
      auto c = dec.find(':');
      if (c == std::string::npos) throw CliError(kBadInput, file + ": the \"auth\" of " + k + " is not user:password");
      user = dec.substr(0, c);
      pass = dec.substr(c + 1);
    } else if (a.contains("username") && a["username"].is_string()) {
      user = a["username"].get<std::string>();
      if (a.contains("password") && a["password"].is_string()) pass = a["password"].get<std::string>();
    } else {
      continue;
    }
    *out = Credentials{user, pass, file};
    return true;
  }
  return false;
}

}  // namespace

Credentials find_credentials(const std::string& domain, const std::string& repository) {
  std::vector<std::string> files;
  if (const char* f = std::getenv("REGISTRY_AUTH_FILE"); f && *f) files.push_back(f);
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x) files.push_back(std::string(x) + "/containers/auth.json");
  files.push_back(docker_config_file());
  Credentials c;
  for (const auto& f : files)
    if (creds_from(f, domain, repository, &c)) return c;
  return {};
}

std::string login_auth_file() {
  if (const char* f = std::getenv("REGISTRY_AUTH_FILE"); f && *f) return f;
  return docker_config_file();
}

// --- HTTP -------------------------------------------------------------------------------------

struct Registry::Share {
  CURLSH* sh = nullptr;
  std::mutex locks[CURL_LOCK_DATA_LAST];
  static void lock(CURL*, curl_lock_data d, curl_lock_access, void* u) { static_cast<Share*>(u)->locks[d].lock(); }
  static void unlock(CURL*, curl_lock_data d, void* u) { static_cast<Share*>(u)->locks[d].unlock(); }
  Share() {
    sh = curl_share_init();
    if (!sh) throw CliError(kFailure, "cannot initialise libcurl");
    curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, &Share::lock);
    curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, &Share::unlock);
    curl_share_setopt(sh, CURLSHOPT_USERDATA, this);
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }
  ~Share() { curl_share_cleanup(sh); }
};

Registry::Registry(const Reference& ref, TransportOptions opts, std::string actions,
                   std::vector<std::string> extra_pull_repos)
    : ref_(ref), opts_(std::move(opts)), actions_(std::move(actions)), extra_pull_repos_(std::move(extra_pull_repos)) {
  curl_global();
  share_ = std::make_unique<Share>();
  ca_blob_ = build_ca_blob(opts_, ref_.api_host());
  if (!opts_.username.empty() || !opts_.password.empty())
    creds_ = Credentials{opts_.username, opts_.password, "the command line"};
  else
    creds_ = find_credentials(ref_.mirror.empty() ? ref_.domain : ref_.mirror, ref_.repository);
  tls_verify_ = !opts_.insecure;
}

Registry::~Registry() = default;

std::string Registry::url_of(const std::string& u) const {
  if (u.rfind("http://", 0) == 0 || u.rfind("https://", 0) == 0) return u;
  return base_url() + (u.empty() || u[0] != '/' ? "/" : "") + u;
}

std::string Registry::auth_header() {
  std::lock_guard<std::mutex> g(mu_);
  return authorization_;
}

namespace {

struct Transfer {
  const HttpRequest* req;
  HttpResponse* resp;
  CURL* curl;
  bool aborted_by_sink = false;
  bool started = false;
  bool body_too_large = false;
  size_t upload_pos = 0;
  std::optional<CliError> reader_error;
};

size_t on_header(char* data, size_t size, size_t n, void* u) {
  auto* t = static_cast<Transfer*>(u);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    t->resp->headers.clear();
    return size * n;
  }
  auto c = line.find(':');
  if (c != std::string::npos) t->resp->headers[lower(trim(line.substr(0, c)))] = trim(line.substr(c + 1));
  return size * n;
}

size_t on_write(char* data, size_t size, size_t n, void* u) {
  auto* t = static_cast<Transfer*>(u);
  size_t len = size * n;
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (t->req->sink && status >= 200 && status < 300) {
    if (!t->started) {
      t->started = true;
      if (t->req->on_body_start && !t->req->on_body_start(status, t->resp->headers)) {
        t->aborted_by_sink = true;
        return 0;
      }
    }
    if (!t->req->sink(data, len)) {
      t->aborted_by_sink = true;
      return 0;
    }
    return len;
  }
  if (t->resp->body.size() + len > t->req->max_body) {
    t->body_too_large = true;
    return 0;
  }
  t->resp->body.append(data, len);
  return len;
}

size_t on_read(char* buf, size_t size, size_t n, void* u) {
  auto* t = static_cast<Transfer*>(u);
  size_t cap = size * n;
  if (t->req->body) {
    size_t left = t->req->body->size() - t->upload_pos;
    size_t k = std::min(left, cap);
    std::memcpy(buf, t->req->body->data() + t->upload_pos, k);
    t->upload_pos += k;
    return k;
  }
  try {
    return t->req->body_reader(buf, cap);
  } catch (const CliError& e) {
    t->reader_error = e;
  } catch (const std::exception& e) {
    t->reader_error = CliError(kFailure, e.what());
  }
  return CURL_READFUNC_ABORT;
}

int on_progress(void*, curl_off_t, curl_off_t, curl_off_t, curl_off_t) { return interrupted() ? 1 : 0; }

}  // namespace

HttpResponse Registry::perform(const HttpRequest& r, bool with_auth) {
  HttpResponse resp;
  CURL* c = curl_easy_init();
  if (!c) throw CliError(kFailure, "cannot initialise libcurl");
  std::unique_ptr<CURL, void (*)(CURL*)> guard(c, curl_easy_cleanup);
  Transfer t{&r, &resp, c, false, false, false, 0, std::nullopt};
  std::string url = url_of(r.url);
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_SHARE, share_->sh);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, opts_.insecure || scheme_ == "http" ? "http,https" : "https");
  curl_easy_setopt(c, CURLOPT_USERAGENT, "rolayer/" ROLAYER_VERSION_STRING);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  // A transfer that moves nothing for a minute is dropped (and resumed by fetch_blob).
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, r.follow ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, tls_verify_ ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, tls_verify_ ? 2L : 0L);
  curl_blob ca{};
  if (!ca_blob_.empty()) {
    ca.data = ca_blob_.data();
    ca.len = ca_blob_.size();
    ca.flags = CURL_BLOB_NOCOPY;
    curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca);
  }
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  struct curl_slist* hdrs = nullptr;
  for (const auto& h : r.headers) hdrs = curl_slist_append(hdrs, h.c_str());
  // Credentials go only to the registry itself: an upload Location (or any absolute URL the
  // registry hands out) on another host gets none.
  if (with_auth && url.rfind(base_url() + "/", 0) == 0) {
    std::string a = auth_header();
    if (!a.empty()) hdrs = curl_slist_append(hdrs, a.c_str());
  }
  if (r.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (r.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r.method.c_str());
    if (r.body || r.body_reader) {
      curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(c, CURLOPT_READDATA, &t);
      if (r.body) {
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(r.body->size()));
      } else {
        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
      }
      hdrs = curl_slist_append(hdrs, "Expect:");
    } else {
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    }
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(hdrs);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
  char* eff = nullptr;
  curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &eff);
  if (eff) resp.effective_url = eff;
  if (t.reader_error) throw *t.reader_error;
  if (rc == CURLE_ABORTED_BY_CALLBACK && interrupted()) throw interrupted_error();
  if (t.aborted_by_sink) {
    check_interrupted();
    throw CliError(kInterrupted, "cancelled");
  }
  if (t.body_too_large) throw CliError(kBadInput, url + ": the response is larger than " + human_bytes(static_cast<int64_t>(r.max_body)));
  if (rc != CURLE_OK) {
    std::string m = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    int code = kNetwork;
    if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE)
      m += " (the registry's TLS certificate is not trusted: give its CA with --ca-file or --cert-dir, or use --insecure)";
    // Keep the curl code for the callers that resume or fall back.
    throw CliError(code, r.method + " " + url + ": " + m + " [curl " + std::to_string(static_cast<int>(rc)) + "]");
  }
  return resp;
}

std::string describe_http_error(const HttpResponse& r) {
  std::string s = "HTTP " + std::to_string(r.status);
  try {
    check_json_depth(r.body, "error");
    json j = json::parse(r.body);
    if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
      for (const auto& e : j["errors"]) {
        if (!e.is_object()) continue;
        std::string code = e.contains("code") && e["code"].is_string() ? e["code"].get<std::string>() : "";
        std::string msg = e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
        if (msg.size() > 300) msg = msg.substr(0, 300) + "...";
        if (code.size() > 100) code = code.substr(0, 100) + "...";
        s += ": " + printable(code) + (msg.empty() ? "" : " (" + printable(msg) + ")");
      }
    }
  } catch (...) {
  }
  return s;
}

void Registry::http_fail(const HttpResponse& r, const std::string& what) {
  int code = kFailure;
  if (r.status == 401 || r.status == 403) code = kAuth;
  else if (r.status == 404) code = kNotFound;
  else if (r.status >= 500) code = kNetwork;
  std::string hint;
  if (r.status == 401)
    hint = creds_.empty() ? " (no credentials for " + ref_.domain + ": run `rolayer login " + ref_.domain + "`)"
                          : " (the credentials from " + creds_.source + " were refused)";
  throw CliError(code, describe() + ": " + what + ": " + describe_http_error(r) + hint);
}

void Registry::ping() {
  HttpRequest r;
  r.url = "/v2/";
  HttpResponse resp;
  bool may_fall_back = opts_.insecure || is_loopback_host(ref_.api_host());
  try {
    resp = perform(r, false);
  } catch (const CliError& e) {
    std::string m = e.what();
    // A host that does not speak TLS: plain HTTP, only where allowed.
    bool no_tls = m.find("[curl 35]") != std::string::npos;
    if (!(may_fall_back && no_tls)) {
      if (no_tls) throw CliError(kNetwork, m + " (if the registry speaks plain HTTP, use --insecure)");
      throw;
    }
    scheme_ = "http";
    resp = perform(r, false);
  }
  if (resp.status == 401) {
    authenticate(resp);
    resp = perform(r, true);
    if (resp.status == 401 || resp.status == 403) http_fail(resp, "authentication");
  }
  if (resp.status != 200 && resp.status != 404 && resp.status != 401)
    http_fail(resp, "not an OCI/Docker registry API at " + base_url() + "/v2/");
}

void Registry::authenticate(const HttpResponse& challenge) {
  auto it = challenge.headers.find("www-authenticate");
  if (it == challenge.headers.end()) http_fail(challenge, "authentication required, without a challenge");
  std::map<std::string, std::string> p;
  std::string scheme = parse_challenge(it->second, &p);
  if (scheme == "basic") {
    if (creds_.empty()) http_fail(challenge, "authentication required");
    std::lock_guard<std::mutex> g(mu_);
    authorization_ = "Authorization: Basic " + base64_encode(creds_.username + ":" + creds_.password);
    return;
  }
  if (scheme != "bearer")
    throw CliError(kAuth, describe() + ": unsupported authentication scheme \"" + printable(scheme) + "\"");
  std::string realm = p["realm"];
  if (realm.rfind("https://", 0) != 0 && !(realm.rfind("http://", 0) == 0)) 
    throw CliError(kAuth, describe() + ": the token realm \"" + printable(realm) + "\" is not an http(s) URL");
  if (realm.rfind("http://", 0) == 0) {
    std::string host = realm.substr(7);
    host = host.substr(0, host.find('/'));
    if (!opts_.insecure && !is_loopback_host(host))
      throw CliError(kAuth, describe() + ": refusing to send credentials to a plain-HTTP token service " + realm +
                                " (use --insecure to allow it)");
  }
  std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
  if (p.count("service")) url += "service=" + url_escape(p["service"]) + "&";
  if (!actions_.empty()) url += "scope=" + url_escape("repository:" + ref_.repository + ":" + actions_);
  for (const auto& x : extra_pull_repos_) url += "&scope=" + url_escape("repository:" + x + ":pull");
  HttpRequest tr;
  tr.url = url;
  if (!creds_.empty())
    tr.headers.push_back("Authorization: Basic " + base64_encode(creds_.username + ":" + creds_.password));
  HttpResponse resp = perform(tr, false);
  if (resp.status != 200) http_fail(resp, "token request to " + realm);
  std::string token;
  try {
    check_json_depth(resp.body, "token");
    json j = json::parse(resp.body);
    for (const char* k : {"token", "access_token"})
      if (j.is_object() && j.contains(k) && j[k].is_string() && !j[k].get<std::string>().empty()) {
        token = j[k].get<std::string>();
        break;
      }
  } catch (const json::exception&) {
  }
  if (token.empty()) throw CliError(kAuth, describe() + ": the token service " + realm + " returned no token");
  std::lock_guard<std::mutex> g(mu_);
  authorization_ = "Authorization: Bearer " + token;
}

HttpResponse Registry::send(HttpRequest r) {
  HttpResponse resp = perform(r, true);
  if (resp.status == 401 && !r.body_reader) {
    authenticate(resp);
    resp = perform(r, true);
  }
  return resp;
}

std::string Registry::get_manifest(const std::string& reference, std::string* media_type, std::string* digest) {
  HttpRequest r;
  r.url = "/v2/" + ref_.repository + "/manifests/" + reference;
  r.headers.push_back(std::string("Accept: ") + kMtOciIndex + ", " + kMtOciManifest + ", " + kMtDockerList + ", " +
                      kMtDockerManifest);
  r.max_body = kMaxManifest;
  HttpResponse resp = send(r);
  if (resp.status == 404) http_fail(resp, "manifest " + reference + " not found");
  if (resp.status != 200) http_fail(resp, "manifest " + reference);
  std::string mt = resp.headers.count("content-type") ? resp.headers["content-type"] : "";
  mt = trim(mt.substr(0, mt.find(';')));
  check_json_depth(resp.body, describe() + ": manifest " + reference);
  try {
    json j = json::parse(resp.body);
    if (j.is_object() && j.contains("mediaType") && j["mediaType"].is_string()) mt = j["mediaType"].get<std::string>();
  } catch (const json::exception& e) {
    throw CliError(kBadInput, describe() + ": manifest " + reference + ": not valid JSON: " + e.what());
  }
  std::string alg = is_digest(reference) ? reference.substr(0, reference.find(':')) : "sha256";
  std::string got = Hasher::digest_of(resp.body, alg);
  if (is_digest(reference) && got != reference)
    throw CliError(kVerify, describe() + ": manifest " + reference + ": digest mismatch: its content is " + got);
  auto h = resp.headers.find("docker-content-digest");
  if (!is_digest(reference) && h != resp.headers.end() && is_digest(h->second) &&
      h->second.substr(0, h->second.find(':')) == "sha256" && h->second != got)
    throw CliError(kVerify, describe() + ": manifest " + reference + ": digest mismatch: the registry says " + h->second +
                                ", the content is " + got);
  *media_type = mt;
  *digest = got;
  return resp.body;
}

std::string Registry::get_small_blob(const std::string& digest, int64_t size) {
  if (size > static_cast<int64_t>(kMaxManifest)) throw CliError(kBadInput, describe() + ": blob " + digest + " is too large");
  HttpRequest r;
  r.url = "/v2/" + ref_.repository + "/blobs/" + digest;
  r.max_body = kMaxManifest;
  HttpResponse resp = send(r);
  if (resp.status != 200) http_fail(resp, "blob " + digest);
  if (size >= 0 && static_cast<int64_t>(resp.body.size()) != size)
    throw CliError(kVerify, describe() + ": blob " + digest + ": size mismatch: the descriptor gives " +
                                std::to_string(size) + " bytes, the blob has " + std::to_string(resp.body.size()));
  std::string got = Hasher::digest_of(resp.body, digest.substr(0, digest.find(':')));
  if (got != digest) throw CliError(kVerify, describe() + ": blob " + digest + ": digest mismatch: its content is " + got);
  return resp.body;
}

void Registry::fetch_blob(const std::string& digest, int64_t size, const std::function<bool(const char*, size_t)>& sink,
                          const std::function<bool()>& cancelled) {
  int64_t offset = 0;
  int failures = 0;
  std::string last_error;
  for (;;) {
    if (cancelled()) throw CliError(kInterrupted, "cancelled");
    HttpRequest r;
    r.url = "/v2/" + ref_.repository + "/blobs/" + digest;
    const int64_t start = offset;
    int64_t skip = 0;
    bool ranged = offset > 0;
    if (ranged) r.headers.push_back("Range: bytes=" + std::to_string(offset) + "-");
    std::optional<CliError> range_error;
    // A server that ignores Range answers 200 from the start: skip what we already have.
    r.on_body_start = [&](long status, const std::map<std::string, std::string>& h) -> bool {
      if (!ranged) return true;
      if (status == 200) {
        skip = start;
        return true;
      }
      auto cr = h.find("content-range");
      if (status == 206 && (cr == h.end() || cr->second.rfind("bytes " + std::to_string(start) + "-", 0) != 0)) {
        range_error = CliError(kNetwork, describe() + ": blob " + digest + ": the registry answered a Range request from byte " +
                                             std::to_string(start) + " with \"" + (cr == h.end() ? "" : cr->second) + "\"");
        return false;
      }
      return true;
    };
    r.sink = [&](const char* d, size_t n) -> bool {
      if (cancelled()) return false;
      if (skip > 0) {
        size_t k = static_cast<size_t>(std::min<int64_t>(skip, static_cast<int64_t>(n)));
        skip -= static_cast<int64_t>(k);
        d += k;
        n -= k;
        if (n == 0) return true;
      }
      offset += static_cast<int64_t>(n);
      return sink(d, n);
    };
    r.headers.push_back("Accept-Encoding: identity");
    HttpResponse resp;
    bool dropped = false;
    try {
      resp = send(r);
    } catch (const CliError& e) {
      if (range_error) throw *range_error;
      if (e.code() != kNetwork) throw;
      dropped = true;
      last_error = e.what();
    }
    if (!dropped) {
      if (resp.status == 200 || resp.status == 206) {
        if (size >= 0 && offset < size) {
          dropped = true;
          last_error = "the connection ended after " + std::to_string(offset) + " of " + std::to_string(size) + " bytes";
        } else {
          return;
        }
      } else if (resp.status == 416 && size >= 0 && offset >= size) {
        return;
      } else if (resp.status >= 500 || resp.status == 429) {
        dropped = true;
        last_error = describe_http_error(resp);
      } else {
        http_fail(resp, "blob " + digest);
      }
    }
    if (offset > start) failures = 0;
    if (++failures > opts_.retries)
      throw CliError(kNetwork, describe() + ": blob " + digest + ": transfer failed after " + std::to_string(opts_.retries) +
                                   " retries at byte " + std::to_string(offset) + ": " + last_error);
    // Back off a little: 0.2 s, 0.4 s, ... at most 3 s.
    for (int i = 0; i < std::min(15, failures * 2); i++) {
      if (cancelled()) throw CliError(kInterrupted, "cancelled");
      ::usleep(100000);
    }
  }
}

bool Registry::has_blob(const std::string& digest) {
  HttpRequest r;
  r.method = "HEAD";
  r.url = "/v2/" + ref_.repository + "/blobs/" + digest;
  HttpResponse resp = send(r);
  if (resp.status == 200) return true;
  if (resp.status == 404) return false;
  http_fail(resp, "HEAD blob " + digest);
}

bool Registry::mount_blob(const std::string& digest, const std::string& from_repo) {
  HttpRequest r;
  r.method = "POST";
  r.url = "/v2/" + ref_.repository + "/blobs/uploads/?mount=" + url_escape(digest) + "&from=" + url_escape(from_repo);
  HttpResponse resp = send(r);
  if (resp.status == 201) return true;
  if (resp.status == 202) {
    // The registry opened an upload instead: cancel it.
    auto loc = resp.headers.find("location");
    if (loc != resp.headers.end()) {
      HttpRequest d;
      d.method = "DELETE";
      d.url = url_of(loc->second);
      try {
        send(d);
      } catch (const CliError&) {
      }
    }
    return false;
  }
  http_fail(resp, "mount blob " + digest + " from " + from_repo);
}

namespace {
std::string with_digest(const std::string& location, const std::string& digest) {
  return location + (location.find('?') == std::string::npos ? "?" : "&") + "digest=" + url_escape(digest);
}
}  // namespace

void Registry::upload_blob(const std::function<size_t(char*, size_t)>& reader,
                           const std::function<std::string()>& digest_after) {
  HttpRequest start;
  start.method = "POST";
  start.url = "/v2/" + ref_.repository + "/blobs/uploads/";
  HttpResponse s = send(start);
  if (s.status != 202 || !s.headers.count("location")) http_fail(s, "start a blob upload");
  std::string loc = url_of(s.headers["location"]);
  HttpRequest patch;
  patch.method = "PATCH";
  patch.url = loc;
  patch.headers.push_back("Content-Type: application/octet-stream");
  patch.body_reader = reader;
  patch.follow = false;
  HttpResponse p = send(patch);
  if (p.status != 202 && p.status != 204) http_fail(p, "upload a blob");
  if (p.headers.count("location")) loc = url_of(p.headers["location"]);
  std::string digest = digest_after();
  HttpRequest put;
  put.method = "PUT";
  put.url = with_digest(loc, digest);
  put.follow = false;
  std::string empty;
  put.body = &empty;
  put.headers.push_back("Content-Type: application/octet-stream");
  HttpResponse q = send(put);
  if (q.status != 201) http_fail(q, "finish the upload of blob " + digest);
}

void Registry::upload_small_blob(const std::string& data, const std::string& digest) {
  HttpRequest start;
  start.method = "POST";
  start.url = "/v2/" + ref_.repository + "/blobs/uploads/";
  HttpResponse s = send(start);
  if (s.status != 202 || !s.headers.count("location")) http_fail(s, "start a blob upload");
  HttpRequest put;
  put.method = "PUT";
  put.url = with_digest(url_of(s.headers["location"]), digest);
  put.body = &data;
  put.follow = false;
  put.headers.push_back("Content-Type: application/octet-stream");
  HttpResponse q = send(put);
  if (q.status != 201) http_fail(q, "upload blob " + digest);
}

std::string Registry::put_manifest(const std::string& reference, const std::string& media_type, const std::string& body) {
  HttpRequest r;
  r.method = "PUT";
  r.url = "/v2/" + ref_.repository + "/manifests/" + reference;
  r.body = &body;
  r.follow = false;
  r.headers.push_back("Content-Type: " + media_type);
  HttpResponse resp = send(r);
  if (resp.status != 201 && resp.status != 200) http_fail(resp, "put manifest " + reference);
  std::string d = Hasher::digest_of(body);
  auto h = resp.headers.find("docker-content-digest");
  if (h != resp.headers.end() && is_digest(h->second) && h->second != d)
    throw CliError(kVerify, describe() + ": the registry stored the manifest as " + h->second + ", not " + d);
  return d;
}

}  // namespace cli
