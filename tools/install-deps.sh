#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages librolayer needs to build and test, when they are missing.
# Used by README's two set-up commands (tools/demo.sh and .ci/run).
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config git
      libarchive-dev libssl-dev libsqlite3-dev libzstd-dev libxxhash-dev liblzma-dev zlib1g-dev libbz2-dev
      libgtest-dev libgmock-dev libcmocka-dev libbenchmark-dev nlohmann-json3-dev
      clang libclang-dev python3 gzip bzip2 xz-utils zstd umoci skopeo jq)
pkgs+=(abigail-tools doxygen dpkg-dev fakeroot lintian file)  # ABI baseline, C reference, .deb packaging
pkgs+=(strace)  # tools/tests/cli_test.sh import_archive_one_pass: counts the opens of an image archive
pkgs+=(libcurl4-openssl-dev docker-registry apache2-utils openssl)  # rolayer pull/push and their tests
# tests/docker: Debian's dockerd 20.10 (started privately by the test), a private registry, curl.
pkgs+=(docker.io docker-registry curl)
pkgs+=(time)  # tools/tests/registry_test.sh pull_rss: peak RSS of a pull (/usr/bin/time %M)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
