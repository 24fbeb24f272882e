#!/usr/bin/env bash
# Installs the Debian packages jobq builds and tests with, if any is missing.
# Idempotent and quiet when everything is there; needs root (or sudo) otherwise.
set -eu

pkgs=(gcc make pkg-config
      libuv1-dev libmicrohttpd-dev libwslay-dev libjansson-dev libsqlite3-dev
      libglib2.0-dev libcurl4-openssl-dev libssl-dev
      libcriterion-dev python3 python3-pytest python3-websocket util-linux
      tzdata clang libclang-rt-14-dev
      prometheus)  # promtool: tests/api/test_stats.py checks /metrics with it

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
