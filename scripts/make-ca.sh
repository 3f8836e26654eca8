#!/usr/bin/env bash
# A private CA and server certificates for a test installation (not for production:
# there, certificates come from the administration's own PKI).
#
#   scripts/make-ca.sh DIR [NAME ...]
#
# writes DIR/ca.crt and DIR/ca.key (the CA), and DIR/server.crt and DIR/server.key,
# one certificate valid for every NAME (default: localhost, mqtt, api) and 127.0.0.1.
# Mosquitto (listener 8883) and the API (HTTPS) use server.*; clients trust ca.crt.
# Idempotent: an existing CA is kept, the server certificate is made again.
set -euo pipefail
dir=${1:?usage: make-ca.sh DIR [NAME ...]}
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(localhost mqtt api)
mkdir -p "$dir"
cd "$dir"
if [ ! -s ca.key ] || [ ! -s ca.crt ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/O=transit test installation/CN=transit test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout ca.key -out ca.crt 2>/dev/null
fi
san="IP:127.0.0.1"
for n in "${names[@]}"; do san="$san,DNS:$n"; done
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/O=transit test installation/CN=${names[0]}" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$san" >server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 397 \
  -extfile server.ext -out server.crt 2>/dev/null
rm -f server.csr server.ext
chmod 600 ca.key
chmod 644 ca.crt server.crt
# Mosquitto drops to its own user and must read its key.
chmod 644 server.key
openssl verify -CAfile ca.crt server.crt >/dev/null
echo "certificates in $dir: ca.crt, server.crt and server.key for ${names[*]} and 127.0.0.1"
