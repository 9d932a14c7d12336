#!/bin/sh
# deps.sh -- makes sure what Kiln builds with is installed (Debian/Ubuntu).
# As root it installs what is missing with apt-get; otherwise it prints the
# exact command to run and fails.
set -e
missing=""
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
command -v make >/dev/null 2>&1 || missing="$missing make"
[ -x /usr/lib/llvm-19/bin/llvm-config ] || command -v llvm-config-19 >/dev/null 2>&1 ||
  missing="$missing llvm-19-dev"
pkg-config --exists check 2>/dev/null || missing="$missing check"
pkg-config --exists zlib 2>/dev/null || [ -f /usr/include/zlib.h ] || missing="$missing zlib1g-dev"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "deps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing
else
  echo "deps: missing$missing; install them with:" >&2
  echo "  sudo apt-get install -y$missing" >&2
  exit 1
fi
