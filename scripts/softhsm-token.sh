#!/usr/bin/env bash
# Create a throw-away SoftHSM2 token for demos, benchmarks and CI, and print the environment to use it:
#
#   eval "$(scripts/softhsm-token.sh)"                  # new temp dir, token "smki", random PIN
#   eval "$(scripts/softhsm-token.sh DIR LABEL)"        # token LABEL under DIR (DIR may already hold tokens)
#   smki ca init --keys pkcs11 --module "$SMKI_PKCS11_MODULE" --token "$SMKI_PKCS11_TOKEN"
#
# The PIN is SMKI_PKCS11_PIN if set, otherwise a fresh random one. It is printed (as an export line)
# because this token is disposable; never do that for a real HSM. Everything lives under DIR:
# softhsm2.conf and tokens/. Delete DIR to destroy the token and its keys.
set -euo pipefail

dir=${1:-$(mktemp -d "${TMPDIR:-/tmp}/smki-softhsm.XXXXXX")}
label=${2:-smki}

module=${SMKI_PKCS11_MODULE:-}
if [ -z "$module" ]; then
  for candidate in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*-linux-gnu/softhsm/libsofthsm2.so \
                   /usr/local/lib/softhsm/libsofthsm2.so; do
    if [ -e "$candidate" ]; then module=$candidate; break; fi
  done
fi
if [ -z "$module" ] || ! command -v softhsm2-util >/dev/null; then
  echo "softhsm-token.sh: SoftHSM2 is not installed (apt-get install softhsm2)" >&2
  exit 1
fi

pin=${SMKI_PKCS11_PIN:-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')}
so_pin=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')  # never needed again: smki does not use the SO

mkdir -p "$dir/tokens"
chmod 700 "$dir"
dir=$(cd "$dir" && pwd)
conf=$dir/softhsm2.conf
if [ ! -e "$conf" ]; then
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir" >"$conf"
fi

if SOFTHSM2_CONF=$conf softhsm2-util --show-slots 2>/dev/null | grep -q "Label: *$label *\$"; then
  echo "softhsm-token.sh: a token labelled '$label' already exists in $dir" >&2
  exit 1
fi
SOFTHSM2_CONF=$conf softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$so_pin" >/dev/null

q() { printf '%q' "$1"; }
echo "export SOFTHSM2_CONF=$(q "$conf")"
echo "export SMKI_PKCS11_MODULE=$(q "$module")"
echo "export SMKI_PKCS11_TOKEN=$(q "$label")"
echo "export SMKI_PKCS11_PIN=$(q "$pin")"
