#!/usr/bin/env bash
# Third-party sources for bench/prompt_quality.py's harder cases, fetched into
# bench/.cache/sources (never vendored into the repository):
#   go/     Go's standard library            (Debian golang-1.19-src)
#   rust/   Rust crates packaged by Debian    (librust-{regex-syntax,memchr,clap,serde-json}-dev)
#   java/   OpenJDK's class library sources   (the installed JDK's lib/src.zip)
# Python comes from the machine's CPython stdlib, JavaScript from npm's own
# packages, C/C++/TypeScript from the llama-cpp-python sdist in bench/.cache.
# Idempotent: what is already unpacked is kept. Needs apt-get (Debian/Ubuntu)
# for Go and Rust; whatever cannot be fetched is skipped with a note.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p .cache/sources
out="$(cd .cache/sources && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fetch_deb() {  # package, destination folder, path inside the package to keep
  local package="$1" dest="$2" inner="$3"
  if [ -d "$out/$dest" ] && [ -n "$(ls -A "$out/$dest" 2>/dev/null)" ]; then return 0; fi
  if ! (cd "$work" && apt-get download "$package" >/dev/null 2>&1); then
    echo "skipped $package (apt-get download failed; try apt-get update)" >&2; return 0
  fi
  mkdir -p "$work/x-$package" "$out/$dest"
  dpkg-deb -x "$work"/"$package"_*.deb "$work/x-$package"
  cp -r "$work/x-$package/$inner"/. "$out/$dest/"
  echo "fetched $package into $out/$dest"
}

fetch_deb golang-1.19-src go usr/share/go-1.19/src
for crate in regex-syntax memchr clap serde-json; do
  fetch_deb "librust-$crate-dev" "rust/$crate" usr/share/cargo/registry
done

if [ ! -d "$out/java" ]; then
  zip=""
  for candidate in /usr/lib/jvm/*/lib/src.zip; do
    if [ -f "$candidate" ]; then zip="$candidate"; break; fi
  done
  if [ -n "$zip" ]; then
    mkdir -p "$out/java"
    (cd "$out/java" && unzip -q "$zip" 'java.base/java/util/*' 'java.base/java/io/*' \
       'java.base/java/net/*' 'java.base/java/text/*' 'java.logging/*' >/dev/null 2>&1 || true)
    echo "unpacked Java sources from $zip into $out/java"
  else
    echo "skipped java (no JDK src.zip)" >&2
  fi
fi
echo "$out"
