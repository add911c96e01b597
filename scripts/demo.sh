#!/usr/bin/env bash
# `make demo`: initialise a CA hierarchy under ./smki-data (SQLite), issue a demonstration
# Organisation Certificate and a batch of Device Certificates, and show how to verify them.
set -euo pipefail
cd "$(dirname "$0")/.."
smki=.venv/bin/smki
data=${SMKI_HOME:-./smki-data}
demo=$data/demo
if [ -z "${SMKI_KEY_PASSPHRASE:-}" ]; then
  export SMKI_KEY_PASSPHRASE=demo-passphrase-change-me
  echo "(demo: the CA key passphrase is '$SMKI_KEY_PASSPHRASE'; set SMKI_KEY_PASSPHRASE for your own)"
fi
export SMKI_ACTOR=${SMKI_ACTOR:-operator:demo}
mkdir -p "$demo"

if [ ! -f "$data/root.pem" ]; then
  $smki ca init --home "$data"
else
  $smki ca show --home "$data"
fi

echo; echo "== An Organisation Certificate (supplier, Entity Identifier 90-B3-D5-1F-30-01-00-00)"
$smki dev make-csr org --entity-id 90B3D51F30010000 --role 2 --usage DS --cn "DEMO SUPPLIER" \
  --out "$demo/org-ds.csr" --key-out "$demo/org-ds.key"
$smki issue org "$demo/org-ds.csr" --out "$demo/org-ds.pem" --home "$data"

echo; echo "== A batch of 2,000 Device CSRs (DS and KA for 1,000 Devices)"
$smki dev make-csr batch --count 2000 --out "$demo/devices.csr.pem"
rm -rf "$demo/devices"
$smki issue batch "$demo/devices.csr.pem" --out "$demo/devices" --home "$data"

echo; echo "== Audit log"
$smki audit verify --home "$data"

files=("$demo"/devices/*.pem)
first=${files[0]}
cat <<TXT

Done. The CA certificates are in $data (root.pem, organisation-ca.pem, device-ca.pem),
the Organisation Certificate is $demo/org-ds.pem and the Device Certificates are in $demo/devices/
(one <device-id>-<ds|ka>.pem each; results.csv lists every CSR's outcome). Verify them with:

  openssl verify -CAfile $data/root.pem -untrusted $data/organisation-ca.pem $demo/org-ds.pem
  openssl verify -CAfile $data/root.pem -untrusted $data/device-ca.pem $demo/devices/*.pem

TXT
openssl verify -CAfile "$data/root.pem" -untrusted "$data/organisation-ca.pem" "$demo/org-ds.pem"
openssl verify -CAfile "$data/root.pem" -untrusted "$data/device-ca.pem" "$first"
