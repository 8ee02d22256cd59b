#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# rolayer docker verify/import against a real engine: starts Debian's dockerd 20.10 with a
# private data root and the given storage driver, loads multi-layer fixtures (docker load), a
# layer from `docker import` and one single-layer image per well-formed corpus archive, then:
#  - `rolayer docker verify` says ok for exactly the layers `docker save` can export, and names
#    a reason for the others (the engine's own tar-split limits: sparse files, directories or
#    hard links with a size, bytes it does not keep);
#  - `rolayer docker import` gives the engine's ChainIDs, and `rolayer export` of every layer
#    equals `docker save`'s <id>/layer.tar byte for byte;
#  - damage made by hand (a changed byte, a truncated file, a removed file, a corrupted
#    tar-split.json.gz, a changed `diff`) is reported naming the layer and the path, and the same
#    damage makes `docker save` fail; both outputs are shown.
# usage: docker_test.sh overlay2|vfs ROLAYER_BINARY     (exit 77 = skipped, with the reason)
set -u
driver=$1
rolayer=$2
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
corpus=${ROLAYER_CORPUS:-$src/../shared/corpus}
mk="python3 $here/make_save_archive.py"
source "$here/dockerd.sh"

work=$(mktemp -d /tmp/rolayer-docker-XXXXXX)
cleanup() {
  dockerd_stop
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL ($driver): $*"
  exit 1
}
step() { echo "== [${SECONDS}s] $*"; }

dockerd_start "$work/d" "$driver"
rc=$?
[ $rc -eq 0 ] || exit $rc
root=$DOCKERD_ROOT
store=$work/store
layerdb_dir=$root/image/$driver/layerdb/sha256
R() { "$rolayer" --quiet --store "$store" "$@"; }

# --- images ------------------------------------------------------------------------------------
step "load fixtures"
cd "$work"
$mk --layer m1.tar $'etc/;etc/os=base\n;bin/;bin/sh->busybox;bin/busybox=@rep:200000:b;usr/;usr/share/;usr/share/doc/;usr/share/doc/a=a;usr/share/doc/b=b;del/;del/x=x;del/y=y'
$mk --layer m2.tar $'etc/;etc/os=changed\n;del/;del/.wh.x=;usr/;usr/share/;usr/share/doc/;usr/share/doc/.wh..wh..opq=;usr/share/doc/c=c;empty='
$mk --layer m3.tar 'app/;app/big=@rep:100000:0123456789;app/link->big;app/.hidden=h'
$mk --layer p1.tar 'p/;p/one=@rep:4000:pulled-one'
$mk --layer p2.tar 'p/;p/two=pulled two;p/.wh.one='
specs=(rolayer-multi:3=m1.tar,m2.tar,m3.tar rolayer-shared:2=m1.tar,m3.tar rolayer-pull:1=p1.tar,p2.tar)
for k in byte trunc rm ts diff; do
  $mk --layer "d1_$k.tar" "f/;f/base_$k=@rep:5000:$k"
  $mk --layer "d2_$k.tar" "f/;f/top_$k=@rep:3000:$k-top;f/small_$k=hello $k"
  specs+=("rolayer-dmg-$k:1=d1_$k.tar,d2_$k.tar")
done
$mk --images fixtures.tar "${specs[@]}"
docker load -q -i fixtures.tar >/dev/null || fail "docker load fixtures.tar"
docker import m2.tar rolayer-imported:1 >/dev/null || fail "docker import m2.tar"

step "load the corpus"
# The corpus runs with overlay2 (what hosts use); vfs runs the fixtures only, to keep the time
# bounded (ROLAYER_DOCKER_CORPUS=all runs it with both, =none with neither).
if [ "${ROLAYER_DOCKER_CORPUS:-}" = none ]; then
  echo "   (ROLAYER_DOCKER_CORPUS=none: fixtures only)"
elif [ "$driver" != overlay2 ] && [ "${ROLAYER_DOCKER_CORPUS:-}" != all ]; then
  echo "   (corpus with overlay2 only; ROLAYER_DOCKER_CORPUS=all for $driver too)"
elif [ -f "$corpus/MANIFEST.tsv" ]; then
  mkdir -p c
  $mk --corpus c "$corpus"
  loaded=0
  refused=0
  # docker load, 4 at a time; the engine refuses some archives (types it does not handle,
  # duplicate paths): those are left out.
  xargs -P 4 -L 1 sh -c 'if docker load -q -i "c/$1.tar" >/dev/null 2>"c/$1.err"; then echo "loaded $2"; else
    echo "refused $2: $(head -c 200 "c/$1.err")"; fi' sh <c/list >c/loaded
  loaded=$(grep -c '^loaded' c/loaded)
  refused=$(grep -c '^refused' c/loaded)
  grep '^refused' c/loaded | sed 's/^/   the engine /' 
  echo "   corpus: $loaded loaded, $refused refused by the engine"
  [ "$loaded" -gt 30 ] || fail "only $loaded corpus images loaded"
else
  echo "   (no corpus at $corpus: fixtures only)"
fi

# --- verify: the same verdict as docker save -------------------------------------------------
step "rolayer docker verify (all layers, -j 2)"
"$rolayer" docker verify --data-root "$root" -j 2 --json >verify.json 2>verify.err
vrc=$?
cat verify.err
mapfile -t images < <(docker images --format '{{.Repository}}:{{.Tag}}' | grep -v '^rolayer-dmg-' | sort)
echo "   ${#images[@]} images"
mkdir -p save
# docker save, one image per archive: in parallel (4 at a time), as the daemon allows.
printf '%s\n' "${images[@]}" | xargs -P 4 -I{} sh -c '
  f=save/$(echo "$1" | tr ":/" "__").tar
  if docker save -o "$f" "$1" 2>"$f.err"; then echo "$1 ok $f"; else echo "$1 failed $f"; fi' sh {} >saved.txt
python3 - "$root" "$driver" <<'EOF' || fail "verify and docker save disagree"
import hashlib, json, sys, subprocess
root, driver = sys.argv[1], sys.argv[2]
verdict = {r["chain_id"]: r for r in json.load(open("verify.json"))}
def chain_of(img):
    ids = json.loads(subprocess.check_output(["docker", "image", "inspect", "-f", "{{json .RootFS.Layers}}", img]))
    out, parent = [], None
    for d in ids:
        parent = d if parent is None else "sha256:" + hashlib.sha256((parent + " " + d).encode()).hexdigest()
        out.append(parent)
    return out
bad = 0
ok_layers = set()
with open("chains.txt", "w") as chains:
    for line in open("saved.txt"):
        img, status, f = line.split()
        chain = chain_of(img)
        missing = [c for c in chain if c not in verdict]
        if missing:
            print("   %s: layers not listed by rolayer docker verify: %s" % (img, missing)); bad += 1; continue
        fine = all(verdict[c]["ok"] for c in chain)
        if status == "ok" and not fine:
            print("   %s: docker save exports it, rolayer says: %s" % (img, [verdict[c]["error"] for c in chain if not verdict[c]["ok"]])); bad += 1
        elif status == "failed" and fine:
            print("   %s: docker save fails (%s), rolayer says ok" % (img, open(f + ".err").read().strip()[:200])); bad += 1
        elif status == "failed":
            why = [verdict[c]["error"] for c in chain if not verdict[c]["ok"]][0]
            print("   both refuse %s: docker: %s | rolayer: %s" % (img, open(f + ".err").read().strip()[:120], why[:160]))
        if status == "ok":
            import tarfile
            with tarfile.open(f) as tf:
                paths = json.load(tf.extractfile("manifest.json"))[0]["Layers"]
            if len(paths) != len(chain):
                print("   %s: %d layer tars in docker save, %d layers" % (img, len(paths), len(chain))); bad += 1; continue
            chains.write("%s %s %s\n" % (img, f, " ".join(c + "=" + p for c, p in zip(chain, paths))))
            ok_layers.update(chain)
print("   %d layers ok by both" % len(ok_layers))
sys.exit(1 if bad or not ok_layers else 0)
EOF
# Exit code as `rolayer verify`: 0 when all passed; here corpus layers the engine cannot export
# either are expected to fail (4 when one is damaged, 1 for an unsupported sparse entry).
if [ ! -d c ] && [ $vrc -ne 0 ]; then fail "verify exit $vrc without corpus layers"; fi
if [ -d c ] && [ $vrc -ne 4 ] && [ $vrc -ne 1 ]; then fail "verify exit $vrc with layers the engine cannot export"; fi

# --- import: same ChainIDs, exports equal docker save's layer tars -----------------------------
step "rolayer docker import + export vs docker save"
n=0
refused_by_store=0
while read -r img f chain; do
  read -ra pairs <<<"$chain"
  top=$(R docker import --data-root "$root" "$img" 2>imp.err)
  irc=$?
  if [ $irc -eq 6 ]; then
    # librolayer's register refuses some archives the engine takes (a name that climbs out of
    # the layer): exit 6 with the reason, nothing kept.
    echo "   the store refuses $img: $(cat imp.err)"
    refused_by_store=$((refused_by_store + 1))
    continue
  fi
  [ $irc -eq 0 ] || fail "rolayer docker import $img: $(cat imp.err)"
  [ "$top" = "${pairs[-1]%%=*}" ] || fail "$img: imported as $top, the engine's ChainID is ${pairs[-1]%%=*}"
  rm -rf x && mkdir x && tar -xf "$f" -C x || fail "$f: cannot unpack"
  for pair in "${pairs[@]}"; do
    layer=${pair%%=*}
    path=${pair#*=}
    R export "$layer" -o x/ours.tar || fail "rolayer export $layer"
    cmp -s x/ours.tar "x/$path" || fail "$img layer $layer: rolayer export differs from docker save's $path"
    n=$((n + 1))
  done
done <chains.txt
echo "   $n layer exports equal docker save's layer tars"
[ "$n" -ge 4 ] || fail "too few layers compared"
[ "$refused_by_store" -le 3 ] || fail "the store refused $refused_by_store images"
# A pulled image: push rolayer-pull:1 (layers of its own) to a private registry (Debian's
# docker-registry on 127.0.0.1, which dockerd trusts without TLS), remove it, pull it back (the
# engine registers the layers from the gzip'd blobs), and import it. dockerd 20.10 writes
# descriptor.json only for foreign layers (with URLs), none here: the test writes one as the
# engine would, with the blob's descriptor from the registry's manifest, and checks that the
# store records it.
if [ "$driver" = overlay2 ] && command -v docker-registry >/dev/null 2>&1; then
  step "pull from a private registry; descriptor.json"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >reg.yml <<REG
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
REG
  docker-registry serve reg.yml >registry.log 2>&1 &
  reg_pid=$!
  for i in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  ref=127.0.0.1:$port/rolayer/pulled:1
  if docker tag rolayer-pull:1 "$ref" && docker push -q "$ref" >/dev/null && docker rmi "$ref" rolayer-pull:1 >/dev/null &&
    docker pull -q "$ref" >/dev/null; then
    curl -fs -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      "http://127.0.0.1:$port/v2/rolayer/pulled/manifests/1" >manifest.json || fail "manifest from the registry"
    kill "$reg_pid"; wait "$reg_pid" 2>/dev/null
    mapfile -t pulled < <(python3 -c '
import hashlib, json, subprocess, sys
ids = json.loads(subprocess.check_output(["docker", "image", "inspect", "-f", "{{json .RootFS.Layers}}", sys.argv[1]]))
parent = None
for d in ids:
    parent = d if parent is None else "sha256:" + hashlib.sha256((parent + " " + d).encode()).hexdigest()
    print(parent)' "$ref")
    top=$(R docker import --data-root "$root" "$ref") || fail "import of the pulled image"
    [ "$top" = "${pulled[-1]}" ] || fail "pulled image imported as $top, the engine's is ${pulled[-1]}"
    docker save -o pulled.tar "$ref" || fail "docker save of the pulled image"
    rm -rf x && mkdir x && tar -xf pulled.tar -C x
    mapfile -t ppaths < <(python3 -c 'import json; [print(p) for p in json.load(open("x/manifest.json"))[0]["Layers"]]')
    for i in "${!pulled[@]}"; do
      R export "${pulled[$i]}" -o x/ours.tar && cmp -s x/ours.tar "x/${ppaths[$i]}" ||
        fail "pulled layer ${pulled[$i]}: rolayer export differs from docker save's"
    done
    # descriptor.json as the engine writes it, on the pulled base layer; a fresh store imports it.
    python3 -c 'import json,sys; d=json.load(open("manifest.json"))["layers"][0]; print(json.dumps({"mediaType": d["mediaType"], "size": d["size"], "digest": d["digest"]}))' \
      >"$layerdb_dir/${pulled[0]:7}/descriptor.json"
    want=$(python3 -c 'import json; print(json.load(open("manifest.json"))["layers"][0]["digest"])')
    "$rolayer" --quiet --store "$work/store2" docker import --data-root "$root" "$ref" >/dev/null || fail "import with a descriptor"
    "$rolayer" --quiet --store "$work/store2" inspect "${pulled[0]}" --json |
      python3 -c 'import json,sys; d=json.load(sys.stdin)["descriptor"]; print(d["digest"], d["size"], d["media_type"])' >desc.txt ||
      fail "inspect of the pulled layer"
    grep -q "^$want " desc.txt || fail "descriptor not kept: $(cat desc.txt), descriptor.json says $want"
    echo "   pulled image imported, exports equal docker save's; descriptor kept: $(cat desc.txt)"
  else
    kill "$reg_pid" 2>/dev/null; wait "$reg_pid" 2>/dev/null
    echo "   (skipped: the private registry did not take the push; $(tail -n 2 registry.log))"
  fi
fi
# Importing again keeps one reference; the image by ID and by ChainID prefix resolve the same.
img_id=$(docker image inspect -f '{{.Id}}' rolayer-multi:3)
top=$(R docker import --data-root "$root" "${img_id:7:12}") || fail "import by image ID"
multi_top=$(awk '$1=="rolayer-multi:3"{print $NF}' chains.txt)
multi_top=${multi_top%%=*}
[ "$top" = "$multi_top" ] || fail "import by image ID gave $top"
R verify >/dev/null || fail "rolayer verify of the imported store"

# --- damage --------------------------------------------------------------------------------------
step "damage by hand"
layerdb=$root/image/$driver/layerdb/sha256
declare -A top_of
for k in byte trunc rm ts diff; do
  t=$(python3 -c '
import hashlib, json, subprocess, sys
ids = json.loads(subprocess.check_output(["docker", "image", "inspect", "-f", "{{json .RootFS.Layers}}", sys.argv[1]]))
print("sha256:" + hashlib.sha256((ids[0] + " " + ids[1]).encode()).hexdigest())' "rolayer-dmg-$k:1")
  top_of[$k]=$t
  cache=$(cat "$layerdb/${t:7}/cache-id")
  if [ "$driver" = overlay2 ]; then files=$root/overlay2/$cache/diff; else files=$root/vfs/dir/$cache; fi
  case $k in
    byte) python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[1000]^=1; open(p,"r+b").write(b)' "$files/f/top_byte" ;;
    trunc) truncate -s 100 "$files/f/top_trunc" ;;
    rm) rm "$files/f/small_rm" ;;
    ts) ts=$layerdb/${t:7}/tar-split.json.gz; head -c $(($(stat -c %s "$ts") / 2)) "$ts" >ts.half && cat ts.half >"$ts" ;;
    diff) printf 'sha256:%064d' 0 >"$layerdb/${t:7}/diff" ;;
  esac
done
# dockerd reads `diff` when it starts: restart it on the damaged data root.
dockerd_stop
dockerd_start "$work/d" "$driver"
rc=$?
[ $rc -eq 0 ] || fail "dockerd did not restart on the damaged data root"
declare -A want_path=([byte]=f/top_byte [trunc]=f/top_trunc [rm]=f/small_rm [ts]=tar-split.json.gz [diff]=diff)
declare -A want_what=([byte]="content differs" [trunc]="size differs" [rm]="missing file" [ts]="tar-split.json.gz" [diff]="was changed")
for k in byte trunc rm ts diff; do
  t=${top_of[$k]}
  out=$("$rolayer" docker verify --data-root "$root" "$t" 2>&1)
  rc=$?
  echo "   [$k] rolayer docker verify (exit $rc): $out" | head -2
  [ $rc -eq 4 ] || fail "[$k] rolayer docker verify exit $rc, not 4"
  echo "$out" | grep -q "$t  DAMAGED" || fail "[$k] the damaged layer is not named"
  echo "$out" | grep -qF "${want_path[$k]}" || fail "[$k] the damaged path ${want_path[$k]} is not named"
  echo "$out" | grep -qF "${want_what[$k]}" || fail "[$k] does not say ${want_what[$k]}"
  R docker import --data-root "$root" "rolayer-dmg-$k:1" >/dev/null 2>imp.err && fail "[$k] rolayer docker import took a damaged layer"
  grep -q "$t" imp.err || fail "[$k] rolayer docker import's error does not name the layer: $(cat imp.err)"
  "$rolayer" --quiet --store "$store" ls --json | grep -q "${t:7}" && fail "[$k] the damaged layer stayed in the store"
  docker save -o dmg.tar "rolayer-dmg-$k:1" 2>save.err && fail "[$k] docker save exported the damaged image"
  echo "   [$k] docker save fails: $(head -c 300 save.err)"
done
# The base layers are intact: verify says so.
for k in byte trunc rm ts diff; do
  b=$(docker image inspect -f '{{index .RootFS.Layers 0}}' "rolayer-dmg-$k:1")
  "$rolayer" docker verify --data-root "$root" "$b" >/dev/null 2>&1 || fail "[$k] the intact base layer $b is reported damaged"
done
# Nothing was written under the data root by rolayer: a read-only bind would be the proof; here
# the layerdb's tree (names, sizes, mtimes) is compared before and after a verify.
snap() { find "$root/image" "$root/$driver" -printf '%p %s %T@\n' 2>/dev/null | sort; }
snap >before.txt
"$rolayer" docker verify --data-root "$root" -j 2 >/dev/null 2>&1
snap >after.txt
cmp -s before.txt after.txt || fail "the data root changed during verify"
echo "PASS ($driver)"
exit 0
