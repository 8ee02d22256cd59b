/* SPDX-License-Identifier: Apache-2.0 */
// The OCI distribution (registry) client of the rolayer tool: image references as users write
// them (Docker's normalisation), credentials (docker and containers auth files), the bearer-token
// and basic challenge flows, TLS, and blob/manifest transfers over libcurl with retries and
// Range resumption. Used by `rolayer pull`, `rolayer push` and `rolayer login`.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common.h"

namespace cli {

// Exit codes of the registry commands, beyond those of common.h (documented in docs/cli.md).
constexpr int kAuth = 7;     // authentication required or refused (401/403), bad credentials
constexpr int kNetwork = 8;  // the registry could not be reached or the transfer failed after retries

// Media types.
extern const char* const kMtOciIndex;
extern const char* const kMtOciManifest;
extern const char* const kMtOciConfig;
extern const char* const kMtDockerList;
extern const char* const kMtDockerManifest;
extern const char* const kMtDockerConfig;

// The machine's architecture as OCI platforms name it (image_plan.cpp, also in image_plan.h).
std::string host_arch();

// An image reference: [HOST[:PORT]/]PATH[:TAG][@DIGEST], normalised as Docker does:
// "alpine" -> docker.io/library/alpine:latest.
struct Reference {
  std::string domain;      // "docker.io", "127.0.0.1:5000", "localhost", "ghcr.io"
  std::string repository;  // "library/alpine"
  std::string tag;         // "" when only a digest was given
  std::string digest;      // "" or "sha256:<hex>"
  std::string mirror;      // pull only: where docker.io is served from ($ROLAYER_DOCKER_IO_MIRROR)
  std::string str() const;      // the normalised long form
  std::string api_host() const;  // where the API lives: registry-1.docker.io for docker.io
  std::string reference() const { return digest.empty() ? tag : digest; }
};

// Throws CliError(kUsage) for a malformed reference. default_tag: used when neither a tag nor a
// digest is given ("" = none allowed: then one is required).
Reference parse_reference(const std::string& s, const std::string& default_tag = "latest");

std::string base64_encode(const std::string& in);

// JSON from outside (a registry, an auth file): nesting deeper than kMaxJsonDepth (common.h)
// levels is refused before nlohmann's recursive parser sees it (a hostile document cannot
// exhaust the stack). Throws nlohmann::json::exception for invalid JSON, CliError(kBadInput) for
// too deep.
void check_json_depth(const std::string& text, const std::string& what);
// Text from outside for a message: control characters and DEL as \xNN (no terminal escapes).
std::string printable(const std::string& s);

// Whether host (with an optional port) names the loopback interface.
bool is_loopback_host(const std::string& host_port);

struct TransportOptions {
  bool insecure = false;    // --insecure: plain HTTP and unverified TLS allowed for any host
  std::string cert_dir;     // --cert-dir: *.crt files added to the trusted CAs
  std::string ca_file;      // --ca-file: a PEM bundle added to the trusted CAs
  int retries = 5;          // attempts after a dropped connection without progress
  std::string username, password;  // explicit credentials (login); else the auth files
};

struct Credentials {
  std::string username, password;
  std::string source;  // the file they came from
  bool empty() const { return username.empty() && password.empty(); }
};

// The credentials for a registry host (and repository: containers' auth.json may scope them):
// $REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json, $DOCKER_CONFIG/config.json or
// ~/.docker/config.json, first match wins.
Credentials find_credentials(const std::string& domain, const std::string& repository);

// Where `rolayer login` writes: $REGISTRY_AUTH_FILE, else $DOCKER_CONFIG/config.json, else
// ~/.docker/config.json.
std::string login_auth_file();

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names; the last value
  std::string body;                            // collected (error bodies, manifests)
  std::string effective_url;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;  // absolute, or a path ("/v2/...") on the registry
  std::vector<std::string> headers;
  const std::string* body = nullptr;  // upload from memory
  // Streaming upload (chunked): fills up to cap bytes, returns 0 at the end; throws CliError.
  std::function<size_t(char*, size_t)> body_reader;
  // Streaming download of a 2xx body: false aborts the transfer.
  std::function<bool(const char*, size_t)> sink;
  // Called before the first byte of a 2xx body reaches sink, with the status and headers:
  // false aborts the transfer.
  std::function<bool(long, const std::map<std::string, std::string>&)> on_body_start;
  size_t max_body = 4u << 20;  // limit on a collected body
  bool follow = true;
};

// One registry host and one repository, with the scope of what we will do there ("pull" or
// "pull,push"). Safe to use from several threads once ping() has run.
class Registry {
 public:
  Registry(const Reference& ref, TransportOptions opts, std::string actions,
           std::vector<std::string> extra_pull_repos = {});
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Picks the scheme (https; http only for loopback or --insecure when the host does not speak
  // TLS) and authenticates (bearer or basic challenge). Throws CliError (kNetwork, kAuth).
  void ping();

  // Sends a request with the current authorization; a 401 re-authenticates once (when the
  // request has no streaming body). Transport failures throw CliError(kNetwork).
  HttpResponse send(HttpRequest r);

  // GETs a manifest by tag or digest; checks its digest when one is known. Returns the body,
  // sets *media_type and *digest. 404: CliError(kNotFound).
  std::string get_manifest(const std::string& reference, std::string* media_type, std::string* digest);

  // GETs a small blob (config), checked against digest and size.
  std::string get_small_blob(const std::string& digest, int64_t size);

  // Streams a blob to sink, resuming with a Range request after a dropped connection (up to
  // retries attempts in a row without progress). The bytes given to sink are the blob's, in
  // order, each once. sink returning false aborts (CliError(kInterrupted...) from cancelled()).
  void fetch_blob(const std::string& digest, int64_t size, const std::function<bool(const char*, size_t)>& sink,
                  const std::function<bool()>& cancelled);

  bool has_blob(const std::string& digest);
  // Cross-repository mount; true when the registry mounted it.
  bool mount_blob(const std::string& digest, const std::string& from_repo);
  // Uploads a blob streamed from reader (POST, one chunked PATCH, PUT with the digest computed
  // by the caller while streaming: digest_after() is called once the reader has ended).
  void upload_blob(const std::function<size_t(char*, size_t)>& reader, const std::function<std::string()>& digest_after);
  // Uploads a small blob in one request (POST, PUT with body and digest).
  void upload_small_blob(const std::string& data, const std::string& digest);
  // PUTs a manifest under reference (tag or digest); returns the digest the registry reports.
  std::string put_manifest(const std::string& reference, const std::string& media_type, const std::string& body);

  const Reference& ref() const { return ref_; }
  std::string base_url() const { return scheme_ + "://" + ref_.api_host(); }
  std::string describe() const {
    return ref_.domain + "/" + ref_.repository + (ref_.mirror.empty() ? "" : " (mirror " + ref_.mirror + ")");
  }

 private:
  HttpResponse perform(const HttpRequest& r, bool with_auth);
  void authenticate(const HttpResponse& challenge);
  std::string auth_header();
  std::string url_of(const std::string& u) const;
  [[noreturn]] void http_fail(const HttpResponse& r, const std::string& what);

  Reference ref_;
  TransportOptions opts_;
  std::string actions_;
  std::vector<std::string> extra_pull_repos_;
  std::string scheme_ = "https";
  bool tls_verify_ = true;
  std::string ca_blob_;
  Credentials creds_;
  std::mutex mu_;
  std::string authorization_;  // "Authorization: ..." or ""
  struct Share;
  std::unique_ptr<Share> share_;
};

// A human-readable reason for a non-2xx registry response: the status and the registry's
// error codes/messages from its JSON body when there is one.
std::string describe_http_error(const HttpResponse& r);

}  // namespace cli
