#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Tests of `rolayer pull`, `push` and `login` against Debian's docker-registry (distribution
# 2.8) started here on 127.0.0.1, plain or with TLS (a CA made here) and htpasswd basic auth,
# with faults injected by tools/tests/registry_proxy.py. Images are put in the registry by an
# independent client (skopeo).
#
# usage: registry_test.sh ROLAYER DRIVER TEST
# Exit 0: passed; 77: skipped (docker-registry, skopeo, openssl or htpasswd missing, or the
# registry does not start; the message says which); anything else: failed.
set -euo pipefail

ROLAYER=$1
DRIVER=$2
TEST=$3
TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO_IMAGE=$TOOLS_DIR/testdata/demo-image
PROXY=$TOOLS_DIR/tests/registry_proxy.py
# shellcheck source=tools/tests/rss_lib.sh
. "$TOOLS_DIR/tests/rss_lib.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rolayer-reg-$TEST.XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  if declare -F dockerd_stop >/dev/null; then dockerd_stop; fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
STORE=$WORK/store
export HOME=$WORK/home
unset ROLAYER_ROOT XDG_DATA_HOME ROLAYER_DRIVER REGISTRY_AUTH_FILE DOCKER_CONFIG XDG_RUNTIME_DIR
mkdir -p "$HOME"

fail() { echo "FAIL [$TEST/$DRIVER]: $*" >&2; exit 1; }
skip() { echo "SKIP [$TEST/$DRIVER]: $*" >&2; exit 77; }
note() { echo "--- $*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || skip "$1 is not installed (Debian package: $2); this test needs it"; }

R() { timeout 120 "$ROLAYER" --store "$STORE" --driver "$DRIVER" "$@"; }

expect_code() {
  local want=$1
  shift
  local got=0
  "$@" >"$WORK/out" 2>"$WORK/err" || got=$?
  if [ "$got" != "$want" ]; then
    echo "stdout:" >&2; cat "$WORK/out" >&2 || true
    echo "stderr:" >&2; cat "$WORK/err" >&2 || true
    fail "expected exit $want, got $got: $*"
  fi
}
expect_err() { grep -q -- "$1" "$WORK/err" || { cat "$WORK/err" >&2; fail "stderr lacks \"$1\""; }; }

json() { python3 -c 'import json,sys; j=json.load(open(sys.argv[2])); r=eval(sys.argv[1]); print(r if not isinstance(r,bool) else ("true" if r else "false"))' "$1" "$2"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

store_is_empty() {
  R ls --json >"$WORK/ls.json"
  [ "$(json 'len(j)' "$WORK/ls.json")" = 0 ] || { cat "$WORK/ls.json" >&2; fail "the store kept layers after a failed pull: $*"; }
}

need docker-registry docker-registry
need skopeo skopeo
need python3 python3

# start_registry NAME [tls] [auth]: starts a registry; sets REG (host:port) and SCHEME.
start_registry() {
  local name=$1 tls=${2:-} auth=${3:-}
  local dir=$WORK/$name port
  mkdir -p "$dir/data"
  port=$(free_port)
  {
    echo "version: 0.1"
    echo "log: {level: error, accesslog: {disabled: true}}"
    echo "storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}"
    echo "http:"
    echo "  addr: 127.0.0.1:$port"
    if [ -n "$tls" ]; then
      echo "  tls: {certificate: $WORK/pki/server.crt, key: $WORK/pki/server.key}"
    fi
    if [ -n "$auth" ]; then
      echo "auth: {htpasswd: {realm: rolayer-test, path: $WORK/pki/htpasswd}}"
    fi
  } >"$dir/config.yml"
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  PIDS+=($!)
  SCHEME=http
  [ -n "$tls" ] && SCHEME=https
  local i
  for i in $(seq 1 100); do
    if python3 - "$SCHEME://127.0.0.1:$port/v2/" <<'EOF' 2>/dev/null; then break; fi
import ssl, sys, urllib.request, urllib.error
ctx = ssl._create_unverified_context()
try:
    urllib.request.urlopen(sys.argv[1], timeout=1, context=ctx)
except urllib.error.HTTPError:
    pass
EOF
    sleep 0.1
  done
  [ "$i" -lt 100 ] || { cat "$dir/log" >&2; skip "docker-registry did not start on 127.0.0.1:$port"; }
  REG=127.0.0.1:$port
}

# start_proxy UPSTREAM MODE [DIGEST]: sets PROXY_REG and PROXY_LOG.
start_proxy() {
  local up=$1 mode=$2 digest=${3:-}
  PROXY_LOG=$WORK/proxy-$mode.log
  : >"$PROXY_LOG"
  rm -f "$WORK/proxy.port"
  python3 "$PROXY" "${up##*:}" "$WORK/proxy.port" "$PROXY_LOG" "$mode" "$digest" &
  PIDS+=($!)
  local i
  for i in $(seq 1 100); do [ -s "$WORK/proxy.port" ] && break; sleep 0.1; done
  [ -s "$WORK/proxy.port" ] || fail "the test proxy did not start"
  PROXY_REG=127.0.0.1:$(cat "$WORK/proxy.port")
}
upload_bytes() { python3 -c 'import json,sys; print(sum(json.loads(l)["upload_bytes"] for l in open(sys.argv[1]) if l.strip()))' "$1"; }

# make_layout DIR: an OCI layout "multi" of three layers: gzip (1.5 MiB, mostly incompressible),
# zstd and uncompressed, with a config carrying Env, Cmd and a label.
make_layout() {
  python3 - "$1" <<'EOF'
import gzip, hashlib, io, json, os, subprocess, sys, tarfile
out = sys.argv[1]
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(out + "/blobs/sha256/" + d, "wb").write(data)
    return "sha256:" + d
def tar(files):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files:
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1700000000; ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    return b.getvalue()
rnd = hashlib.sha256(b"seed").digest()
big = b"".join(hashlib.sha256(rnd + i.to_bytes(4, "big")).digest() for i in range(48 * 1024))
l1 = tar([("etc/hello", b"hello\n"), ("data/big.bin", big)])
l2 = tar([("etc/second", b"second layer\n" * 100)])
l3 = tar([("etc/third", b"third\n"), ("etc/hello", b"replaced\n")])
c1 = gzip.compress(l1, mtime=0)
c2 = subprocess.run(["zstd", "-q", "-c"], input=l2, capture_output=True, check=True).stdout
layers = [(c1, "application/vnd.oci.image.layer.v1.tar+gzip"), (c2, "application/vnd.oci.image.layer.v1.tar+zstd"),
          (l3, "application/vnd.oci.image.layer.v1.tar")]
diff_ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in (l1, l2, l3)]
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "config": {"Env": ["PATH=/usr/bin", "HELLO=world"], "Cmd": ["/bin/true"], "Labels": {"a": "b"}},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids},
                     "history": [{"created_by": "test"}]}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config), "size": len(config)},
    "layers": [{"mediaType": mt, "digest": blob(c), "size": len(c)} for c, mt in layers]}).encode()
# "multi2": another base layer under the same second and third blobs.
l0 = tar([("etc/other-base", b"another base\n")])
c0 = gzip.compress(l0, mtime=0)
config2 = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(l0).hexdigest()] + diff_ids[1:]}}).encode()
manifest2 = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config2), "size": len(config2)},
    "layers": [{"mediaType": mt, "digest": blob(c), "size": len(c)}
               for c, mt in [(c0, "application/vnd.oci.image.layer.v1.tar+gzip")] + layers[1:]]}).encode()
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(manifest),
                        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "multi"}},
                       {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(manifest2),
                        "size": len(manifest2), "annotations": {"org.opencontainers.image.ref.name": "multi2"}}]}
open(out + "/index.json", "w").write(json.dumps(index))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
EOF
}

# skopeo_push LAYOUT:REF DEST [extra skopeo options]
skopeo_push() {
  local src=$1 dest=$2
  shift 2
  timeout 120 skopeo copy -q --dest-tls-verify=false "$@" "oci:$src" "docker://$dest" >/dev/null 2>"$WORK/skopeo.err" ||
    { cat "$WORK/skopeo.err" >&2; fail "skopeo copy to $dest failed"; }
}

# The config's DiffIDs of an image in the registry, one per line.
config_diff_ids() {
  timeout 60 skopeo inspect --tls-verify=false --config "docker://$1" "${@:2}" | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["rootfs"]["diff_ids"]))'
}
# The DiffIDs of a chain in the store, base first.
chain_diff_ids() {
  local c=$1
  R ls --json >"$WORK/ls.json"
  python3 - "$WORK/ls.json" "$c" <<'EOF'
import json, sys
by = {l["chain_id"]: l for l in json.load(open(sys.argv[1]))}
c, out = sys.argv[2], []
while c:
    out.append(by[c]["diff_id"]); c = by[c]["parent"]
print("\n".join(reversed(out)))
EOF
}

t_pull_push() {
  start_registry plain
  make_layout "$WORK/multi"
  skopeo_push "$WORK/multi:multi" "$REG/test/multi:v1"
  skopeo_push "$DEMO_IMAGE:latest" "$REG/demo:v1"

  note "pull: DiffIDs equal the config's; the layers verify; the top is retained"
  expect_code 0 R pull --jobs 3 "$REG/test/multi:v1"
  top=$(cat "$WORK/out")
  [ "$(chain_diff_ids "$top")" = "$(config_diff_ids "$REG/test/multi:v1")" ] || fail "DiffIDs differ from the config's"
  expect_code 0 R verify
  R inspect "$top" --json >"$WORK/top.json"
  [ "$(json 'j["retained"]' "$WORK/top.json")" = 1 ] || fail "the pulled top is not retained"
  # The same chain as skopeo + import.
  expect_code 0 "$ROLAYER" --store "$WORK/ref-store" --driver "$DRIVER" import "$WORK/multi:multi"
  [ "$(cat "$WORK/out")" = "$top" ] || fail "pull and import give different ChainIDs"
  # A short name with a digest, and the demo image.
  digest=$(timeout 60 skopeo inspect --tls-verify=false "docker://$REG/demo:v1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])')
  expect_code 0 R pull "$REG/demo@$digest"
  demo_top=$(cat "$WORK/out")
  [ "$(chain_diff_ids "$demo_top")" = "$(config_diff_ids "$REG/demo:v1")" ] || fail "demo DiffIDs differ from the config's"

  note "pull again: nothing downloaded"
  start_proxy "$REG" pass
  expect_code 0 R pull "$PROXY_REG/test/multi:v1"
  [ "$(cat "$WORK/out")" = "$top" ] || fail "the second pull gave another ChainID"
  if grep -q '"GET", "path": "/v2/test/multi/blobs/sha256' "$PROXY_LOG" && \
     [ "$(grep -c '/blobs/sha256' "$PROXY_LOG")" -gt 1 ]; then
    cat "$PROXY_LOG" >&2; fail "a layer already in the store was downloaded again"
  fi

  note "an image sharing blobs on another base: those layers come from the store, not the registry"
  skopeo_push "$WORK/multi:multi2" "$REG/test/multi2:v1"
  : >"$PROXY_LOG"
  expect_code 0 R pull "$PROXY_REG/test/multi2:v1"
  top2=$(cat "$WORK/out")
  [ "$(chain_diff_ids "$top2")" = "$(config_diff_ids "$REG/test/multi2:v1")" ] || fail "multi2 DiffIDs differ from the config's"
  [ "$(grep -c '"GET", "path": "/v2/test/multi2/blobs/sha256' "$PROXY_LOG")" = 2 ] || { cat "$PROXY_LOG" >&2; fail "multi2: expected two blob GETs (config and new base)"; }
  expect_code 0 R verify
  expect_code 0 R rmi "$PROXY_REG/test/multi2:v1"

  note "the image is kept: rolayer images"
  src_digest=$(timeout 60 skopeo inspect --tls-verify=false "docker://$REG/test/multi:v1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])')
  R images --json >"$WORK/images.json"
  [ "$(json '"'"$REG/test/multi:v1"'" in [i["name"] for i in j if i["top_chain_id"] == "'"$top"'"]' "$WORK/images.json")" = true ] || { cat "$WORK/images.json" >&2; fail "the pulled image is not listed"; }
  [ "$(json '[i["manifest_digest"] for i in j if i["name"] == "'"$REG/test/multi:v1"'"][0]' "$WORK/images.json")" = "$src_digest" ] || fail "the kept manifest is not the registry's"

  note "push back unchanged: zero layer bytes, through HEAD (same repository) and mount (--from-repo); the same manifest"
  : >"$PROXY_LOG"
  expect_code 0 R push "$top" "$PROXY_REG/test/multi:again"
  [ "$(cat "$WORK/out")" = "$src_digest" ] || fail "re-push of the pulled image gave manifest $(cat "$WORK/out"), not $src_digest"
  [ "$(upload_bytes "$PROXY_LOG")" -lt 2000 ] || { cat "$PROXY_LOG" >&2; fail "re-push uploaded layer bytes"; }
  grep -q '"PATCH"' "$PROXY_LOG" && { cat "$PROXY_LOG" >&2; fail "re-push streamed a layer"; }
  : >"$PROXY_LOG"
  expect_code 0 R push "$top" "$PROXY_REG/elsewhere/multi:mounted" --from-repo test/multi
  grep -q '"PATCH"' "$PROXY_LOG" && { cat "$PROXY_LOG" >&2; fail "push with --from-repo streamed a layer"; }
  grep -q 'mount=' "$PROXY_LOG" || fail "push with --from-repo did not mount"
  [ "$(cat "$WORK/out")" = "$src_digest" ] || fail "push with --from-repo gave another manifest digest"
  timeout 60 skopeo inspect --tls-verify=false --config "docker://$REG/elsewhere/multi:mounted" >"$WORK/cfg.json"
  [ "$(json 'j["config"]["Env"][1]' "$WORK/cfg.json")" = "HELLO=world" ] || fail "the pushed config lost Env"
  [ "$(config_diff_ids "$REG/elsewhere/multi:mounted")" = "$(chain_diff_ids "$top")" ] || fail "mounted image's DiffIDs differ"

  note "rmi: the image goes, and its layers with it when no other image holds them"
  expect_code 0 R rmi "$REG/test/multi:v1"
  grep -q "removed" "$WORK/out" && { cat "$WORK/out" >&2; fail "rmi removed layers another image (the pull through the proxy) holds"; }
  expect_code 0 R rmi "$PROXY_REG/test/multi:v1"
  grep -q "removed $top" "$WORK/out" || { cat "$WORK/out" >&2; fail "rmi did not remove the chain"; }
  R images --json >"$WORK/images.json"
  [ "$(json 'len([i for i in j if i["top_chain_id"] == "'"$top"'"])' "$WORK/images.json")" = 0 ] || fail "rmi left the image"
  expect_code 3 R rmi "$REG/test/multi:v1"

  note "push to a new repository (gzip, then zstd): skopeo reads back what was pushed"
  expect_code 0 R import "$WORK/multi:multi"
  [ "$(cat "$WORK/out")" = "$top" ] || fail "import gave another chain"
  for comp in gzip zstd; do
    : >"$PROXY_LOG"
    expect_code 0 R push --compression "$comp" "$top" "$PROXY_REG/fresh-$comp/multi:v2"
    pushed=$(cat "$WORK/out")
    [ "$(upload_bytes "$PROXY_LOG")" -gt 1000000 ] || fail "a push to a new repository uploaded too little"
    timeout 60 skopeo inspect --tls-verify=false --raw "docker://$REG/fresh-$comp/multi:v2" >"$WORK/raw.json"
    [ "$(sha256sum <"$WORK/raw.json" | awk '{print "sha256:" $1}')" = "$pushed" ] || fail "the registry's manifest is not the one pushed"
    grep -q "tar+$comp" "$WORK/raw.json" || fail "layers are not $comp"
    # The compression depends on the layer's bytes only (gzip: fixed blocks, stored parts where
    # the bytes look random): the same chain pushed again gives the same blobs and manifest.
    expect_code 0 R push --compression "$comp" "$top" "$PROXY_REG/again-$comp/multi:v2"
    [ "$(cat "$WORK/out")" = "$pushed" ] || fail "a second $comp push of the same chain gave another manifest"
    rm -rf "$WORK/back"
    timeout 120 skopeo copy -q --src-tls-verify=false "docker://$REG/fresh-$comp/multi:v2" "oci:$WORK/back:v2" >/dev/null
    expect_code 0 "$ROLAYER" --store "$WORK/back-store-$comp" --driver "$DRIVER" import "$WORK/back:v2"
    [ "$(cat "$WORK/out")" = "$top" ] || fail "what skopeo pulled back ($comp) imports to another chain"
    # And rolayer pulls it back to the same chain.
    expect_code 0 "$ROLAYER" --store "$WORK/back-pull-$comp" --driver "$DRIVER" pull "$REG/fresh-$comp/multi:v2"
    [ "$(cat "$WORK/out")" = "$top" ] || fail "pulling the pushed image back gives another chain"
  done
}

t_pull_faults() {
  start_registry plain
  make_layout "$WORK/multi"
  skopeo_push "$WORK/multi:multi" "$REG/test/multi:v1"
  big=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(max(m["layers"], key=lambda l: l["size"])["digest"])' \
    "$WORK/multi/blobs/sha256/$(json 'j["manifests"][0]["digest"][7:]' "$WORK/multi/index.json")")

  note "a 404 tag"
  expect_code 3 R pull "$REG/test/multi:nosuchtag"
  expect_err "not found"
  store_is_empty "404"

  note "a wrong blob (digest mismatch)"
  start_proxy "$REG" corrupt "$big"
  expect_code 4 R pull "$PROXY_REG/test/multi:v1"
  expect_err "digest mismatch"
  store_is_empty "digest mismatch"

  note "a connection cut in the middle of a blob, once: resumed with Range"
  start_proxy "$REG" cut-once "$big"
  expect_code 0 R pull "$PROXY_REG/test/multi:v1"
  top=$(cat "$WORK/out")
  grep -q '"range": "bytes=[1-9]' "$PROXY_LOG" || { cat "$PROXY_LOG" >&2; fail "no Range request after the cut"; }
  [ "$(chain_diff_ids "$top")" = "$(config_diff_ids "$REG/test/multi:v1")" ] || fail "DiffIDs differ after a resume"
  expect_code 0 R verify
  expect_code 2 R rm "$top"
  expect_err "rmi"
  expect_code 0 R rmi "$PROXY_REG/test/multi:v1"
  store_is_empty "rm after the resume test"

  note "a blob cut every time: a clear error after the retries"
  start_proxy "$REG" truncate "$big"
  expect_code 8 R pull --retries 2 "$PROXY_REG/test/multi:v1"
  expect_err "after 2 retries"
  store_is_empty "retries exhausted"

  note "an index without the host's platform"
  timeout 60 skopeo inspect --tls-verify=false --raw "docker://$REG/test/multi:v1" >"$WORK/m.json"
  mdigest=$(sha256sum <"$WORK/m.json" | awk '{print "sha256:" $1}')
  msize=$(stat -c %s "$WORK/m.json")
  python3 - "http://$REG/v2/test/multi/manifests/multiarch" "$mdigest" "$msize" <<'EOF'
import json, sys, urllib.request, urllib.error
body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sys.argv[2], "size": int(sys.argv[3]),
                   "platform": {"os": "linux", "architecture": "s390x"}}]}).encode()
req = urllib.request.Request(sys.argv[1], data=body, method="PUT",
                             headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
try:
    assert urllib.request.urlopen(req).status == 201
except urllib.error.HTTPError as e:
    sys.exit("PUT index: %s %s" % (e, e.read()))
EOF
  expect_code 3 R pull --platform linux/arm64 "$REG/test/multi:multiarch"
  expect_err "has no image for linux/arm64"
  expect_err "linux/s390x"
  store_is_empty "platform"

  note "a manifest nested 200,000 levels deep: refused before parsing (no stack overflow)"
  start_proxy "$REG" deep-manifest
  expect_code 6 R pull "$PROXY_REG/test/multi:v1"
  expect_err "nested deeper than 64"
  store_is_empty "deep manifest"

  note "a push whose uploads fail: exit 8 after the retries, no manifest in the registry"
  expect_code 0 R import "$WORK/multi:multi"
  top=$(cat "$WORK/out")
  start_proxy "$REG" fail-upload
  expect_code 8 R push --retries 1 "$top" "$PROXY_REG/failed/multi:v1"
  expect_err "injected failure"
  [ "$(grep -c '"PATCH"' "$PROXY_LOG")" -ge 2 ] || { cat "$PROXY_LOG" >&2; fail "the failed upload was not retried"; }
  if timeout 60 skopeo inspect --tls-verify=false --raw "docker://$REG/failed/multi:v1" >/dev/null 2>&1; then
    fail "a failed push left a manifest"
  fi
  expect_code 0 R rmi multi
  store_is_empty "after the push test"

  note "a malformed reference and a server that does not answer"
  expect_code 2 R pull "$REG/UPPER/case:v1"
  expect_code 8 R pull --retries 0 "127.0.0.1:$(free_port)/x:y"
  store_is_empty "refused"
}

t_pull_interrupt() {
  start_registry plain
  make_layout "$WORK/multi"
  skopeo_push "$WORK/multi:multi" "$REG/test/multi:v1"
  big=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(max(m["layers"], key=lambda l: l["size"])["digest"])' \
    "$WORK/multi/blobs/sha256/$(json 'j["manifests"][0]["digest"][7:]' "$WORK/multi/index.json")")
  start_proxy "$REG" slow "$big"
  # A background job of a script starts with SIGINT ignored: restore it, as a terminal's Ctrl-C finds it.
  python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
    "$ROLAYER" --store "$STORE" --driver "$DRIVER" pull "$PROXY_REG/test/multi:v1" >"$WORK/out" 2>"$WORK/err" &
  pid=$!
  for _ in $(seq 1 100); do grep -q "$big" "$PROXY_LOG" && break; sleep 0.1; done
  sleep 0.5
  kill -INT "$pid"
  rc=0
  wait "$pid" || rc=$?
  [ "$rc" = 130 ] || { cat "$WORK/err" >&2; fail "an interrupted pull exited $rc, not 130"; }
  store_is_empty "interrupted"
}

t_tls_auth() {
  need openssl openssl
  need htpasswd apache2-utils
  mkdir -p "$WORK/pki" "$WORK/certs"
  (
    cd "$WORK/pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=rolayer test CA" -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\n' >ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.crt 2>/dev/null
    htpasswd -Bbn tester s3cret >htpasswd 2>/dev/null
  ) || skip "openssl/htpasswd could not make the test PKI"
  cp "$WORK/pki/ca.crt" "$WORK/certs/ca.crt"
  start_registry tls tls auth
  skopeo_push "$DEMO_IMAGE:latest" "$REG/demo:v1" --dest-creds tester:s3cret

  note "an untrusted certificate: a TLS error, no fallback to plain HTTP"
  expect_code 8 R pull "$REG/demo:v1"
  expect_err "not trusted"
  note "no credentials: 401"
  expect_code 7 R pull --ca-file "$WORK/pki/ca.crt" "$REG/demo:v1"
  expect_err "rolayer login"
  store_is_empty "401"
  note "login with a wrong password is refused and saves nothing"
  export REGISTRY_AUTH_FILE=$WORK/auth.json
  echo wrong | expect_code 7 R login --cert-dir "$WORK/certs" -u tester --password-stdin "$REG"
  [ ! -e "$REGISTRY_AUTH_FILE" ] || fail "a refused login saved credentials"
  echo s3cret | expect_code 0 R login --cert-dir "$WORK/certs" -u tester --password-stdin "$REG"
  [ "$(stat -c %a "$REGISTRY_AUTH_FILE")" = 600 ] || fail "the auth file is not 0600"
  expect_code 0 R pull --cert-dir "$WORK/certs" "$REG/demo:v1"
  top=$(cat "$WORK/out")
  expect_code 0 R push --cert-dir "$WORK/certs" "$top" "$REG/pushed/demo:v1"
  [ "$(config_diff_ids "$REG/pushed/demo:v1" --creds tester:s3cret)" = "$(chain_diff_ids "$top")" ] || fail "pushed DiffIDs differ"
  unset REGISTRY_AUTH_FILE

  note "credentials from ~/.docker/config.json (base64 auth)"
  mkdir -p "$HOME/.docker"
  printf '{"auths":{"%s":{"auth":"%s"}}}' "$REG" "$(printf tester:s3cret | base64)" >"$HOME/.docker/config.json"
  rm -rf "$STORE"
  expect_code 0 R pull --ca-file "$WORK/pki/ca.crt" "$REG/pushed/demo:v1"
  [ "$(cat "$WORK/out")" = "$top" ] || fail "pull with docker config credentials gave another chain"
  note "and \${XDG_RUNTIME_DIR}/containers/auth.json with a wrong password wins over it: refused"
  export XDG_RUNTIME_DIR=$WORK/run
  mkdir -p "$XDG_RUNTIME_DIR/containers"
  printf '{"auths":{"%s":{"auth":"%s"}}}' "$REG" "$(printf tester:nope | base64)" >"$XDG_RUNTIME_DIR/containers/auth.json"
  expect_code 7 R pull --ca-file "$WORK/pki/ca.crt" "$REG/demo:v1"
  expect_err "were refused"
}

t_reference() {
  # Docker's normalisation: short names are docker.io/library/NAME:latest, served here by a
  # docker.io mirror on 127.0.0.1 (nothing leaves the machine).
  start_registry plain
  skopeo_push "$DEMO_IMAGE:latest" "$REG/library/demo:latest"
  skopeo_push "$DEMO_IMAGE:latest" "$REG/someone/demo:1.0"
  expect_code 0 R pull "$REG/library/demo:latest"
  top=$(cat "$WORK/out")
  digest=$(timeout 60 skopeo inspect --tls-verify=false "docker://$REG/library/demo:latest" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])')
  export ROLAYER_DOCKER_IO_MIRROR=$REG
  for r in demo demo:latest library/demo docker.io/library/demo:latest index.docker.io/library/demo "demo@$digest" \
           docker://demo someone/demo:1.0 docker.io/someone/demo:1.0; do
    expect_code 0 R pull "$r"
    [ "$(cat "$WORK/out")" = "$top" ] || fail "pull $r gave another chain"
  done
  expect_code 3 R pull other/demo
  expect_err "docker.io/other/demo"
  unset ROLAYER_DOCKER_IO_MIRROR
  expect_code 2 R pull "Alpine"
  expect_code 2 R pull "alpine:bad tag"
  expect_code 2 R pull "alpine@sha256:1234"
  expect_code 2 R pull --platform linux "alpine"
}

# dockerd 20.10 (Debian's docker.io, a private daemon on this machine) as the independent client:
# an image it loads (docker load of an archive made here, no network) and pushes to the loopback
# registry is pulled by rolayer with the config's DiffIDs and the chain `rolayer import` of its
# `docker save` gives; rolayer's push of it is pulled back by dockerd with the same RootFS layers.
t_dockerd() {
  source "$TOOLS_DIR/../tests/docker/dockerd.sh"
  local mk="python3 $TOOLS_DIR/../tests/docker/make_save_archive.py"
  mkdir -p "$WORK/img"
  (
    cd "$WORK/img"
    $mk --layer l1.tar $'etc/;etc/os=base\n;bin/;bin/tool=@rep:300000:0123456789abcdef;bin/sh->tool'
    $mk --layer l2.tar 'usr/;usr/share/;usr/share/doc=@rep:5000:doc;etc/;etc/.wh.os='
    $mk --layer l3.tar 'app/;app/data=@rep:200000:xyz;app/link->data'
    $mk img.tar rolayer-test/fromdocker:v1 l1.tar l2.tar l3.tar
  ) >/dev/null || fail "making the image archive"
  local rc=0 drv
  for drv in overlay2 vfs; do
    rc=0
    dockerd_start "$WORK/d-$drv" "$drv" 2>"$WORK/dockerd.err" || rc=$?
    [ "$rc" = 0 ] && break
  done
  [ "$rc" = 0 ] || skip "dockerd cannot start here: $(cat "$WORK/dockerd.err")"
  start_registry plain
  note "dockerd ($drv) loads the image and pushes it to $REG (loopback: plain HTTP)"
  timeout 60 docker load -q -i "$WORK/img/img.tar" >/dev/null || fail "docker load"
  timeout 20 docker tag rolayer-test/fromdocker:v1 "$REG/from-docker/img:v1" || fail "docker tag"
  timeout 60 docker push -q "$REG/from-docker/img:v1" >"$WORK/push.out" 2>&1 || { cat "$WORK/push.out" >&2; fail "docker push"; }
  timeout 60 docker save -o "$WORK/saved.tar" "$REG/from-docker/img:v1" || fail "docker save"

  note "rolayer pull: the config's DiffIDs, the chain rolayer import of docker save gives"
  expect_code 0 R pull "$REG/from-docker/img:v1"
  local top; top=$(cat "$WORK/out")
  [ "$(chain_diff_ids "$top")" = "$(config_diff_ids "$REG/from-docker/img:v1")" ] || fail "DiffIDs differ from the config's"
  expect_code 0 "$ROLAYER" --store "$WORK/ref-store" --driver "$DRIVER" import "$WORK/saved.tar"
  [ "$(cat "$WORK/out")" = "$top" ] || fail "pull gave $top, import of docker save $(cat "$WORK/out")"
  expect_code 0 R verify
  # docker push compressed the layers: the recorded descriptors are the registry's gzip blobs.
  R ls --json >"$WORK/ls.json"
  [ "$(json 'sorted(set(o["descriptor"]["media_type"] for o in j))' "$WORK/ls.json")" = "['application/vnd.docker.image.rootfs.diff.tar.gzip']" ] ||
    fail "descriptors: $(cat "$WORK/ls.json")"

  note "rolayer push of it; dockerd pulls it back: the same RootFS layers"
  expect_code 0 R push "$top" "$REG/from-rolayer/img:v1"
  timeout 60 docker pull -q "$REG/from-rolayer/img:v1" >"$WORK/pull.out" 2>&1 || { cat "$WORK/pull.out" >&2; fail "docker pull"; }
  local a b
  a=$(timeout 20 docker image inspect --format '{{json .RootFS.Layers}}' "$REG/from-docker/img:v1")
  b=$(timeout 20 docker image inspect --format '{{json .RootFS.Layers}}' "$REG/from-rolayer/img:v1")
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "RootFS layers differ: docker's $a, pulled back $b"
  [ "$(echo "$b" | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)))')" = "$(chain_diff_ids "$top")" ] ||
    fail "dockerd's RootFS layers are not the chain's DiffIDs"
  # The config came back byte for byte: the same image ID.
  [ "$(timeout 20 docker image inspect --format '{{.Id}}' "$REG/from-rolayer/img:v1")" = \
    "$(timeout 20 docker image inspect --format '{{.Id}}' "$REG/from-docker/img:v1")" ] || fail "the image ID changed"
  dockerd_stop
}

# make_layout4 DIR MIB: an OCI layout "four" of four layers, each with MIB MiB of random bytes in
# one file: gzip, plain, plain (a hard link to a file of layer 1 and a whiteout of another: its
# staged apply is deferred to the commit), gzip. MIB=0: small layers (the random file 300 KiB).
# BAD=3: the config lists a wrong DiffID for layer 3.
make_layout4() {
  python3 - "$1" "$2" "${3:-0}" <<'EOF'
import gzip, hashlib, io, json, os, sys, tarfile
out, mib, bad = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
size = mib << 20 if mib else 300 << 10
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(out + "/blobs/sha256/" + d, "wb").write(data)
    return "sha256:" + d
def tar(entries):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data, link in entries:
            ti = tarfile.TarInfo(name); ti.mtime = 1700000000; ti.mode = 0o644
            if link:
                ti.type = tarfile.LNKTYPE; ti.linkname = link; t.addfile(ti)
            elif data is None:
                ti.type = tarfile.DIRTYPE; ti.mode = 0o755; t.addfile(ti)
            else:
                ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    return b.getvalue()
L = [
    tar([("etc", None, None), ("etc/base", b"base\n", None), ("etc/gone", b"gone\n", None), ("data", None, None),
         ("data/r1.bin", os.urandom(size), None)]),
    tar([("data", None, None), ("data/r2.bin", os.urandom(size), None), ("data/r2.link", None, "data/r2.bin")]),
    tar([("etc", None, None), ("etc/.wh.gone", b"", None), ("etc/base.link", None, "etc/base"), ("data", None, None),
         ("data/r3.bin", os.urandom(size), None)]),
    tar([("data", None, None), ("data/r4.bin", os.urandom(size), None), ("etc", None, None), ("etc/base", b"top\n", None)]),
]
mts = ["application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar",
       "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip"]
blobs = [gzip.compress(l, compresslevel=1, mtime=0) if "gzip" in mt else l for l, mt in zip(L, mts)]
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(l + (b"x" if i + 1 == bad else b"")).hexdigest()
                                                              for i, l in enumerate(L)]}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config), "size": len(config)},
    "layers": [{"mediaType": mt, "digest": blob(c), "size": len(c)} for c, mt in zip(blobs, mts)]}).encode()
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(manifest),
                        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "four"}}]}
open(out + "/index.json", "w").write(json.dumps(index))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
EOF
}
# The layer blob digests of an image in the registry, one per line.
registry_blobs() {
  timeout 60 skopeo inspect --tls-verify=false --raw "docker://$1" | python3 -c 'import json,sys; print("\n".join(l["digest"] for l in json.load(sys.stdin)["layers"]))'
}
# What a store holds besides its database: staged or temporary leftovers would show here.
store_files() {
  (cd "$1" && find . -mindepth 1 | grep -v -e '\.db' -e '^\./lock' | sort)
}
# ls --json of a store without what differs between two stores of the same layers.
ls_rows() {
  "$ROLAYER" --store "$1" --driver "$DRIVER" ls --json | python3 -c '
import json, sys
rows = json.load(sys.stdin)
for r in rows:
    for k in list(r):
        if k in ("created", "created_at", "time", "registered_at", "cache_id"): del r[k]
print(json.dumps(sorted(rows, key=lambda r: r["chain_id"]), sort_keys=True, indent=1))'
}

# Issue 18: pull applies the layers of an image at once (--jobs N); the result is --jobs 1's.
# failed_pull_jobs_1_and_4 NAME REF TEXT1 TEXT2: `pull --jobs 1` and `--jobs 4` of REF into fresh
# stores $WORK/NAME1 and $WORK/NAME4 both fail with exit 4 and the same error (which names TEXT1
# and TEXT2), and leave no layer, no file and nothing in the store's tmp.
failed_pull_jobs_1_and_4() {
  local name=$1 ref=$2 text1=$3 text2=$4 j st
  for j in 1 4; do
    st="$WORK/$name$j"
    rm -rf "$st"
    expect_code 0 "$ROLAYER" --store "$st" --driver "$DRIVER" ls
    store_files "$st" >"$st.before"
    expect_code 4 "$ROLAYER" --store "$st" --driver "$DRIVER" pull --jobs "$j" "$ref"
    expect_err "$text1"
    expect_err "$text2"
    cp "$WORK/err" "$st.err"
    [ "$("$ROLAYER" --store "$st" --driver "$DRIVER" ls --json)" = "[]" ] || fail "--jobs $j: a failed pull left layers"
    store_files "$st" >"$st.after"
    diff "$st.before" "$st.after" >&2 || fail "--jobs $j: a failed pull left files in the store (staged data, tmp)"
    [ -z "$(ls -A "$st/tmp")" ] || fail "--jobs $j: the store's tmp is not empty: $(ls -A "$st/tmp")"
  done
  diff "$WORK/${name}1.err" "$WORK/${name}4.err" >&2 || fail "--jobs 1 and --jobs 4 report different errors"
}

t_pull_parallel() {
  start_registry plain
  make_layout4 "$WORK/four" 0
  skopeo_push "$WORK/four:four" "$REG/test/four:v1"

  note "pull --jobs 1 and --jobs 4: the same ChainIDs, rows and trees"
  expect_code 0 "$ROLAYER" --store "$WORK/s1" --driver "$DRIVER" pull --jobs 1 "$REG/test/four:v1"
  top1=$(cat "$WORK/out")
  expect_code 0 "$ROLAYER" --store "$WORK/s4" --driver "$DRIVER" pull --jobs 4 "$REG/test/four:v1"
  top4=$(cat "$WORK/out")
  [ "$top1" = "$top4" ] || fail "pull --jobs 1 gave $top1, --jobs 4 $top4"
  [ "$(STORE=$WORK/s4 chain_diff_ids "$top4")" = "$(config_diff_ids "$REG/test/four:v1")" ] || fail "DiffIDs differ from the config's"
  ls_rows "$WORK/s1" >"$WORK/ls1"
  ls_rows "$WORK/s4" >"$WORK/ls4"
  diff "$WORK/ls1" "$WORK/ls4" >&2 || fail "ls --json differs between --jobs 1 and --jobs 4"
  [ "$(grep -c '"chain_id"' "$WORK/ls4")" = 4 ] || fail "expected 4 layers: $(cat "$WORK/ls4")"
  for s in s1 s4; do
    expect_code 0 "$ROLAYER" --store "$WORK/$s" --driver "$DRIVER" verify
    expect_code 0 "$ROLAYER" --store "$WORK/$s" --driver "$DRIVER" export "$top1" -o "$WORK/$s.tar"
  done
  cmp "$WORK/s1.tar" "$WORK/s4.tar" || fail "the exported top layers differ"
  # The same chain as import (which stages from the layout).
  expect_code 0 "$ROLAYER" --store "$WORK/si" --driver "$DRIVER" import --jobs 4 "$WORK/four:four"
  [ "$(cat "$WORK/out")" = "$top1" ] || fail "import gave another chain than pull"
  expect_code 2 R pull --jobs 0 "$REG/test/four:v1"
  expect_err "from 1 to 64"
  expect_code 2 R pull --jobs 65 "$REG/test/four:v1"

  note "a corrupted blob in the middle (layer 3 of 4): exit 4, the same error as --jobs 1, nothing left"
  # (skopeo compresses the uncompressed layers on the way: the registry's manifest names the blobs.)
  mid=$(registry_blobs "$REG/test/four:v1" | sed -n 3p)
  start_proxy "$REG" corrupt "$mid"
  failed_pull_jobs_1_and_4 f "$PROXY_REG/test/four:v1" "digest mismatch" "$mid"

  note "a wrong DiffID in the config for layer 3 of 4: the same error as --jobs 1, nothing left"
  make_layout4 "$WORK/bad" 0 3
  skopeo_push "$WORK/bad:four" "$REG/test/bad:v1"
  failed_pull_jobs_1_and_4 d "$REG/test/bad:v1" "DiffID mismatch" "for layer 3"

  note "the same with the base layer in the store before: it stays, with its own reference"
  base=$(STORE=$WORK/s1 chain_diff_ids "$top1" | sed -n 1p)  # a base layer's ChainID is its DiffID
  expect_code 0 "$ROLAYER" --store "$WORK/s1" --driver "$DRIVER" export "$base" -o "$WORK/base.tar"
  expect_code 0 "$ROLAYER" --store "$WORK/f4" --driver "$DRIVER" register "$WORK/base.tar"
  "$ROLAYER" --store "$WORK/f4" --driver "$DRIVER" ls --json >"$WORK/ls.json"
  [ "$(json '[l["chain_id"] for l in j]' "$WORK/ls.json")" = "['$base']" ] || fail "expected the base layer alone: $(cat "$WORK/ls.json")"
  store_files "$WORK/f4" >"$WORK/f4.before"
  expect_code 4 "$ROLAYER" --store "$WORK/f4" --driver "$DRIVER" pull --jobs 4 "$PROXY_REG/test/four:v1"
  expect_err "digest mismatch"
  "$ROLAYER" --store "$WORK/f4" --driver "$DRIVER" ls --json >"$WORK/ls.json"
  [ "$(json '[l["chain_id"] for l in j]' "$WORK/ls.json")" = "['$base']" ] || fail "the base layer did not stay alone: $(cat "$WORK/ls.json")"
  store_files "$WORK/f4" >"$WORK/f4.after"
  diff "$WORK/f4.before" "$WORK/f4.after" >&2 || fail "a failed pull on a base left files"
  expect_code 0 "$ROLAYER" --store "$WORK/f4" --driver "$DRIVER" verify
}

# Issue 18: the peak RSS of a pull stays under 80 MiB and flat with the image size (it was 133-148
# MiB with three 32 MiB download pipes), with --jobs 1 and with --jobs 4, on 4 x 64 MiB layers.
t_pull_rss() {
  need_rss_measure "$ROLAYER"
  start_registry plain
  make_layout4 "$WORK/big" 64
  skopeo_push "$WORK/big:four" "$REG/test/big:v1"
  rm -rf "$WORK/big"
  local j rss
  for j in 1 4; do
    rm -rf "$WORK/r$j"
    expect_code 0 /usr/bin/time -f 'RSS %M' -o "$WORK/time.$j" "$ROLAYER" --store "$WORK/r$j" --driver "$DRIVER" pull --jobs "$j" "$REG/test/big:v1"
    rss=$(peak_rss_kib "$WORK/time.$j")
    note "pull --jobs $j of 4 x 64 MiB: peak RSS $((rss / 1024)) MiB"
    [ "$rss" -le $((80 * 1024)) ] || fail "pull --jobs $j: peak RSS $rss KiB > 80 MiB"
    rm -rf "$WORK/r$j"
  done
}

"t_$TEST"
echo "PASS [$TEST/$DRIVER]"
