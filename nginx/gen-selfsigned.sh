#!/usr/bin/env bash
# Throwaway TLS material for trying nginx/submux.conf locally (and for its test):
# a private CA and a server certificate for localhost / 127.0.0.1 / ::1 signed by it.
#
#   nginx/gen-selfsigned.sh DIR [EXTRA_DNS_NAME...]
#
# Writes into DIR (created if missing):
#   ca.crt      the CA certificate: give it to clients (curl --cacert, node `ca`,
#               NODE_EXTRA_CA_CERTS, websocat/wscat via SSL_CERT_FILE, ...)
#   ca.key      the CA key (only needed to sign more certificates; delete it otherwise)
#   server.crt  the server certificate (nginx ssl_certificate)
#   server.key  its key (nginx ssl_certificate_key)
# Valid 30 days. Never use these in production: use a real CA (e.g. Let's Encrypt).
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
  exit 2
fi
command -v openssl >/dev/null 2>&1 || {
  echo "gen-selfsigned.sh: openssl not found (apt-get install openssl)" >&2
  exit 1
}

dir=$1
shift
mkdir -p "$dir"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do san="$san,DNS:$name"; done

# CA: P-256 keys are quick to generate and accepted everywhere.
openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key"
openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 30 \
  -subj "/CN=submux throwaway test CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" \
  -out "$dir/ca.crt" 2>/dev/null

# Server certificate, with the names in subjectAltName (clients ignore the CN).
openssl ecparam -name prime256v1 -genkey -noout -out "$dir/server.key"
openssl req -new -key "$dir/server.key" -subj "/CN=localhost" -out "$work/server.csr"
cat >"$work/ext.cnf" <<CNF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
CNF
openssl x509 -req -in "$work/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -days 30 -sha256 \
  -extfile "$work/ext.cnf" -out "$dir/server.crt" 2>/dev/null
chmod 644 "$dir/ca.crt" "$dir/server.crt"

openssl verify -CAfile "$dir/ca.crt" "$dir/server.crt" >/dev/null
echo "wrote $dir/{ca.crt,ca.key,server.crt,server.key} (SAN $san)"
