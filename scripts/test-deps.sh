#!/bin/sh
# The Debian packages the whole suite needs, installed when missing: `npm test` runs this first (pretest), and so
# does .ci/run; this is the one list. `npm run test:unit` needs none of them.
#   nginx-light, apache2   the real front servers of the integration tests (Apache with mod_proxy_uwsgi)
#   systemd                systemd-socket-activate, systemd-analyze, systemd-notify (no running systemd needed)
#   python3                the NOTIFY_SOCKET listener of the notify tests (Node has no AF_UNIX datagrams)
#   iproute2               ss: the listen queue of --stats, --metrics and their tests; ip: the network namespaces
#                          of the several-hosts test (test/integration/hosts.test.ts)
#   openssl                the certificates the TLS tests make with the README's commands
#   wrk, curl              the c=2000 listen-queue storm and the benchmarks; the README's first request
#   gcc, libc6-dev         the native accept addon (scripts/build-native.js); libuv1-dev where Node brings no uv.h
# Installs with apt-get, through sudo when not root; says what to do where neither works.
set -eu
cd "$(dirname "$0")/.."

missing=""
need() { missing="$missing $1"; }

# The tests run /usr/sbin/nginx and /usr/sbin/apache2, where Debian's packages put them (not on a user's PATH).
[ -x /usr/sbin/nginx ] || need nginx-light
{ [ -x /usr/sbin/apache2 ] && [ -f /usr/lib/apache2/modules/mod_proxy_uwsgi.so ]; } || need apache2
{ command -v systemd-socket-activate && command -v systemd-analyze && command -v systemd-notify; } >/dev/null 2>&1 || need systemd
command -v python3 >/dev/null 2>&1 || need python3
{ command -v ss && command -v ip; } >/dev/null 2>&1 || need iproute2
command -v openssl >/dev/null 2>&1 || need openssl
command -v wrk >/dev/null 2>&1 || need wrk
command -v curl >/dev/null 2>&1 || need curl
command -v "${CC:-cc}" >/dev/null 2>&1 || need "gcc libc6-dev"
# uv.h where scripts/build-native.js looks: this Node's include folder, the Node 24 of .ci, the system's.
node_include="$(dirname "$(node -p 'require("fs").realpathSync(process.execPath)')")/../include/node"
uv_found=""
for dir in "$node_include" "$(dirname "$(node -p 'process.execPath')")/../node_modules/node-linux-$(node -p process.arch)/include/node" \
  ".ci/node24/node_modules/node/node_modules/node-linux-$(node -p process.arch)/include/node" /usr/include /usr/local/include; do
  [ -e "$dir/uv.h" ] && uv_found=yes && break
done
[ -n "$uv_found" ] || need libuv1-dev

if [ -z "$missing" ]; then
  exit 0
fi
echo "test-deps: installing the Debian packages the integration tests need:$missing"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: no apt-get on this machine: install the equivalents of$missing yourself, or run the unit tests alone (npm run test:unit), which need only Node" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "test-deps: not root and no sudo: as root, run apt-get install$missing; or run the unit tests alone (npm run test:unit), which need only Node" >&2
    exit 1
  fi
  sudo="sudo"
fi
# $missing unquoted: one word per package.
# shellcheck disable=SC2086
$sudo apt-get update
# shellcheck disable=SC2086
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
