#!/usr/bin/env bash
# `make demo`: the mission in one command (README "Quick start"; under 2 minutes).
#   1. the CA hierarchy;
#   2. a supplier taken through MP074 to an approved Device subscriber (RA operator and approver);
#   3. SMKI credentials and `smki serve` (Gateway and SPOTI listeners, mutual TLS);
#   4. a Device batch over the Gateway listener, in JSON and in DCC XML, with curl;
#   5. the same batch on SPOTI, refused by the RA rules, each named with its SEC reference;
#   6. openssl checks of what was issued, and the audit log's hash chain.
# Everything goes into a fresh demo home ($SMKI_HOME, default ./smki-data); a home that is not a
# demo home is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
smki="$root/.venv/bin/smki"
py="$root/.venv/bin/python"
data=${SMKI_HOME:-./smki-data}
if [ -e "$data" ] && [ ! -e "$data/.smki-demo" ]; then
  echo "$data exists and is not a demo home: set SMKI_HOME to a new directory for the demo" >&2
  exit 1
fi
rm -rf "$data"
export SMKI_HOME=$data
if [ -z "${SMKI_KEY_PASSPHRASE:-}" ]; then
  export SMKI_KEY_PASSPHRASE=demo-passphrase-change-me
  echo "(demo: the CA key passphrase is '$SMKI_KEY_PASSPHRASE'; set SMKI_KEY_PASSPHRASE for your own)"
fi
export SMKI_P12_PASSWORD=${SMKI_P12_PASSWORD:-demo-p12-password}
export SMKI_ACTOR=${SMKI_ACTOR:-operator:demo}
step() { printf '\n== %s\n' "$*"; }
show() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }

step "1. The CA: Root, Organisation CA and Device CA (spec §4.3)"
show "$smki" ca init
touch "$data/.smki-demo"
demo=$data/demo
mkdir -p "$demo"

step "2. A supplier becomes an Authorised Subscriber for Device Certificates (MP074)"
show "$smki" staff add op1 --name "Olive Operator" --role ra-operator
show "$smki" staff add ap1 --name "April Approver" --role ra-approver
show "$smki" party add P1 --name "Acme Energy" --category large-supplier --as op1
"$smki" party set-status P1 --srept 2019-06-01 --uept 2019-09-01 --gateway GW-0001 \
  --registered-role import-supplier --as op1 >/dev/null
show "$smki" party entity P1 90B3D51F30010000 --role 2 --as op1 >/dev/null
show "$smki" aro nominate A1 --party P1 --name "Ann Officer" --sro "Sam SRO" --as op1
show "$smki" aro verify A1 --check "passport + utility bill" --as op1
show "$smki" aro screen A1 --date 2020-01-03 --standard "BS 7858:2019" --as op1
app=$("$smki" apply device --party P1 --as op1)
show "$smki" ra evidence "$app" --kind installation-need --reference "RA-EV-0042 rollout plan" --as op1
show "$smki" ra propose "$app" --as op1
echo "(an operator never decides: ra.dual-control needs a different RA approver)"
"$smki" ra approve "$app" --as op1 || true
show "$smki" ra approve "$app" --as ap1
show "$smki" party show P1

step "3. SMKI credentials, and the Gateway and SPOTI listeners (mutual TLS)"
show "$smki" aro credential issue A1 --out "$demo/a1.p12"
read -r gw sp < <("$py" -c 'import socket
ports = []
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ports.append(s.getsockname()[1]); s.close()
print(*ports)')
"$smki" serve --gateway "127.0.0.1:$gw" --spoti "127.0.0.1:$sp" --batch-workers 1 >"$demo/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
GW=https://127.0.0.1:$gw
SPOTI=https://127.0.0.1:$sp
curl_smki() { curl -s --cacert "$data/credentials-ca.pem" --cert-type P12 --cert "$demo/a1.p12:$SMKI_P12_PASSWORD" "$@"; }
for _ in $(seq 100); do
  curl_smki -o /dev/null "$GW/api/v1/whoami" && break
  kill -0 $server 2>/dev/null || { cat "$demo/serve.log"; exit 1; }
  sleep 0.2
done
echo "smki serve: Gateway $GW, SPOTI $SPOTI (log: $demo/serve.log)"
show curl_smki "$GW/api/v1/whoami"; echo

step "4a. A Device batch over the Gateway: JSON API"
show "$smki" dev make-csr batch --count 200 --format json --out "$demo/batch.json" --start 00DB000000001000
batch=$(curl_smki -H 'Content-Type: application/json' --data-binary @"$demo/batch.json" \
  "$GW/api/v1/device-batches" | jq -r .batch_id)
echo "POST $GW/api/v1/device-batches → batch $batch"
until [ "$(curl_smki "$GW/api/v1/device-batches/$batch" | jq -r .status)" = completed ]; do sleep 0.2; done
curl_smki "$GW/api/v1/device-batches/$batch" | jq -c '{batch_id, status, processed, issued, rejected}'
mkdir -p "$demo/json-certs"
curl_smki "$GW/api/v1/device-batches/$batch/results?limit=1000" \
  | jq -r '.results[] | select(.status == "issued") | .certificate_pem' \
  | awk -v dir="$demo/json-certs" '/BEGIN CERT/ {n++} {print > (dir "/cert-" n ".pem")}'
echo "$(ls "$demo/json-certs" | wc -l) certificates written to $demo/json-certs"

step "4b. The same over the DCC XML service (SubmitCSRBatch, CSRBatchResult)"
show "$smki" dev make-csr batch --count 100 --format xml --out "$demo/batch.xml" --start 00DB000000002000
submitted=$(curl_smki -H 'Content-Type: application/xml' --data-binary @"$demo/batch.xml" \
  "$GW/1.0/PortalCSRBatch/SubmitCSRBatch")
echo "$submitted"; echo
xml_batch=$(sed -n 's/.*<BatchId>\([0-9]*\)<\/BatchId>.*/\1/p' <<<"$submitted")
until curl_smki "$GW/1.0/PortalCSRBatch/CSRBatchResult?BatchId=$xml_batch" -o "$demo/result.xml" \
  && grep -q '<BatchStatus>COMPLETED</BatchStatus>' "$demo/result.xml"; do sleep 0.2; done
echo "CSRBatchResult $xml_batch: COMPLETED, $(grep -o '<Status>SUCCESS</Status>' "$demo/result.xml" | wc -l) SUCCESS"
mkdir -p "$demo/xml-certs"
grep -o '<Certificate>[^<]*' "$demo/result.xml" | sed -n '1,3s/<Certificate>//p' | while read -r b64; do
  n=$((${n:-0} + 1)); base64 -d <<<"$b64" > "$demo/xml-certs/cert-$n.der"
done

step "5. SPOTI carries Organisation Certificates only: the same batch is refused by the RA rules"
status=$(curl_smki -H 'Content-Type: application/json' --data-binary @"$demo/batch.json" \
  -o "$demo/spoti.json" -w '%{http_code}' "$SPOTI/api/v1/device-batches")
echo "POST $SPOTI/api/v1/device-batches → HTTP $status"
jq -r '.error | "\(.code): \(.message)", (.rules[] | "  FAIL \(.id): \(.reason)\n       ref: \(.reference)")' \
  "$demo/spoti.json"

step "6. openssl checks"
show openssl verify -CAfile "$data/root.pem" -untrusted "$data/device-ca.pem" "$demo/json-certs/cert-1.pem"
ok=$(openssl verify -CAfile "$data/root.pem" -untrusted "$data/device-ca.pem" "$demo"/json-certs/*.pem | grep -c ': OK$')
echo "$ok of $(ls "$demo/json-certs" | wc -l) JSON-batch certificates verify against the Root"
show openssl x509 -in "$demo/json-certs/cert-1.pem" -noout -subject -issuer -ext subjectAltName,keyUsage
for der in "$demo"/xml-certs/*.der; do
  openssl x509 -inform DER -in "$der" -out "${der%.der}.pem"
done
show openssl verify -CAfile "$data/root.pem" -untrusted "$data/device-ca.pem" "$demo"/xml-certs/*.pem
show "$smki" audit verify
cat <<TXT

Done. The home is $data (CA certificates root.pem, organisation-ca.pem, device-ca.pem; the
credentials CA credentials-ca.pem); the ARO's credential is $demo/a1.p12 (password
\$SMKI_P12_PASSWORD). Run the service yourself: README, "Run the service".
TXT
