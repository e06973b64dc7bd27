#!/usr/bin/env bash
# Runs `npm run test:unit` as on a machine with Node alone: a PATH of node, npm, sh, git and a few coreutils (no
# nginx, Apache, systemd tools, python3, ss, curl, wrk or C compiler), /usr/sbin hidden (nginx and apache2 are run
# by absolute path), systemd's tools unexecutable, and a network namespace with loopback only. Needs root (unshare).
#   scripts/test-unit-alone.sh [--user NAME] [vitest arguments, e.g. test/ops]
# --user: as that user, in a copy of the checkout it owns (a laptop's user is not root).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--inside" ]; then
  exec unshare --mount --net --propagation private "$0" --inside "$@"
fi
shift
user=""
if [ "${1:-}" = "--user" ]; then
  user="$2"
  shift 2
fi
ip link set lo up
bin="$(mktemp -d /tmp/nu-alone-XXXXXX)"
chmod 755 "$bin"
for tool in node npm sh git env cat ls mkdir rm cp mv ln chmod dirname basename readlink realpath sleep true false \
  echo id uname tr head tail wc sort date mktemp touch tar gzip kill; do
  path="$(command -v "$tool" || true)"
  [ -n "$path" ] && ln -s "$(readlink -f "$path")" "$bin/$tool"
done
run=(env)
if [ -n "$user" ]; then
  # The checkout's files (tracked and new, not ignored) and its node_modules, in a folder the user owns.
  copy="$bin/checkout"
  mkdir "$copy"
  git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$copy" 2>/dev/null || true
  # node_modules itself the user's (vitest writes node_modules/.vite-temp), its packages this checkout's.
  mkdir "$copy/node_modules"
  for entry in node_modules/* node_modules/.bin; do ln -s "$PWD/$entry" "$copy/$entry"; done
  chown -R "$user" "$copy"
  cd "$copy"
  run=("$(command -v setpriv)" --reuid="$user" --regid="$(id -g "$user")" --clear-groups env HOME="$copy")
fi
mount -t tmpfs tmpfs /usr/sbin
empty="$bin/.empty"
: >"$empty"
for tool in /usr/bin/systemd-socket-activate /usr/bin/systemd-analyze /usr/bin/systemd-notify /usr/bin/python3 \
  /usr/bin/ss /usr/bin/curl /usr/bin/wrk /usr/bin/cc /usr/bin/gcc; do
  if [ -e "$tool" ]; then mount --bind "$empty" "$tool"; fi
done
echo "PATH=$bin; network interfaces: $(node -p 'Object.keys(require("os").networkInterfaces()).join(" ")'); user ${user:-$(id -un)}"
"${run[@]}" PATH="$bin" npm run test:unit -- "$@"
