#!/usr/bin/env bash
# Debian packages smki's tests and demo need: openssl (interop checks), softhsm2 (PKCS#11 backend
# tests), chromium (portal browser tests), postgresql (the production store; CI runs the suite on it),
# curl and jq (make demo sends its batches over the listeners with curl and reads the JSON with jq),
# haproxy (the two-node load-balanced topology of docs/deployment.md and its test).
# golang-cfssl (the peer CA of `smki bench http --peer cfssl`; the bench skips it with a note if missing).
# Installs only what is missing, and only as root with apt-get; otherwise says what to install.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
command -v chromium >/dev/null || need+=(chromium)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null || need+=(haproxy)
command -v cfssl >/dev/null || need+=(golang-cfssl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "Please install these Debian packages: ${need[*]} (tests needing them will be skipped)" >&2
fi
