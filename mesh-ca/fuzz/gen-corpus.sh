#!/usr/bin/env bash
# Regenerates the seed corpus of the `csr` fuzz target with openssl, an
# implementation independent of ours. The seeds are committed; the unit test
# `csr::tests::fuzz_corpus_replays_without_panicking` replays them, and
# `refuses_rsa_keys_from_openssl` / `signs_an_openssl_made_csr` use two.
set -euo pipefail
cd "$(dirname "$0")/corpus/csr"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

p256() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/$1.key" 2>/dev/null; }
req() { # name key subj extra-args...
  local name=$1 key=$2 subj=$3; shift 3
  openssl req -new -key "$tmp/$key.key" -subj "$subj" "$@" -out "$name"
}

p256 a
req valid-openssl-p256.pem a /CN=orders -addext "subjectAltName=URI:spiffe://mesh.local/orders"
openssl req -in valid-openssl-p256.pem -outform DER -out valid-openssl-p256.der
req ca-request.pem a /CN=evil -addext "subjectAltName=URI:spiffe://mesh.local/evil" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
req two-uri.pem a /CN=web \
  -addext "subjectAltName=URI:spiffe://mesh.local/web,URI:spiffe://mesh.local/admin"
req foreign-trust-domain.pem a /CN=web -addext "subjectAltName=URI:spiffe://evil.local/web"
req no-san.pem a /CN=web
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/rsa.key" 2>/dev/null
req rsa2048.pem rsa /CN=web -addext "subjectAltName=URI:spiffe://mesh.local/web"
head -c 300 valid-openssl-p256.pem > truncated.pem
echo "-----END CERTIFICATE REQUEST-----" >> truncated.pem
head -c 100 valid-openssl-p256.der > truncated.der
head -c 512 /dev/urandom > random.bin
ls -l
