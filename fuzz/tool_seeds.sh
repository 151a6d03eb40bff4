#!/bin/sh
# fuzz/tool_seeds.sh DIR: writes fuzz_certs seeds for the loaders whose inputs the openssl tool
# makes (DER certificates and keys, encrypted keys, PKCS#12 bundles, CRLs) into DIR/certs/, for
# both implementations. Like fuzz_seeds --keys, they hold private keys: made fresh by each run
# (fuzz/run.sh), never committed. The passphrase is fuzz_certs.c's FUZZ_PASSPHRASE.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: fuzz/tool_seeds.sh DIR" >&2
    exit 2
fi
pass=tlsock-fuzz
mkdir -p "$1/certs"
out=$(cd "$1/certs" && pwd)
tmp=$(mktemp -d /tmp/tlsock-fuzz-seeds-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

# A CA, a leaf it signs, and a CRL of the CA revoking the leaf.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
    -out ca.pem -subj /CN=fuzz-ca -days 30 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key \
    -out leaf.csr -subj /CN=localhost 2>/dev/null
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem \
    -days 30 2>/dev/null
touch index.txt
echo 01 >crlnumber
cat >ca.cnf <<CNF
[ca]
default_ca = fuzz
[fuzz]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 30
CNF
openssl ca -config ca.cnf -keyfile ca.key -cert ca.pem -revoke leaf.pem 2>/dev/null
openssl ca -config ca.cnf -keyfile ca.key -cert ca.pem -gencrl -out crl.pem 2>/dev/null
openssl crl -in crl.pem -outform DER -out crl.der

openssl x509 -in leaf.pem -outform DER -out leaf.der
openssl pkey -in leaf.key -outform DER -out leaf.key.der
openssl pkcs8 -topk8 -in leaf.key -v2 aes-256-cbc -passout pass:$pass -out leaf.p8.pem
openssl pkcs8 -topk8 -in leaf.key -v2 aes-256-cbc -passout pass:$pass -outform DER \
    -out leaf.p8.der
openssl ec -in leaf.key -aes256 -passout pass:$pass -out leaf.trad.pem 2>/dev/null
openssl pkcs12 -export -in leaf.pem -inkey leaf.key -certfile ca.pem -passout pass:$pass \
    -keypbe AES-256-CBC -certpbe AES-256-CBC -macalg sha256 -out leaf.p12

# One seed: byte 0 the loader (fuzz_certs.c's loaders[]) and implementation, the first blob's
# length (2 bytes, big-endian), the first blob, the second.
seed() { # NAME LOADER IMPL FIRST [SECOND]
    len=$(wc -c <"$4")
    {
        printf "\\$(printf %o $(($2 * 2 + $3)))"
        printf "\\$(printf %o $((len / 256)))\\$(printf %o $((len % 256)))"
        cat "$4"
        if [ $# -ge 5 ]; then cat "$5"; fi
    } >"$out/$1"
}

for impl in 0 1; do
    name=$(if [ $impl = 0 ]; then echo openssl; else echo gnutls; fi)
    seed cert-der-$name 0 $impl leaf.der leaf.key.der
    seed cert-p8-pem-$name 3 $impl leaf.pem leaf.p8.pem
    seed cert-p8-der-$name 3 $impl leaf.der leaf.p8.der
    seed cert-traditional-$name 3 $impl leaf.pem leaf.trad.pem
    seed pkcs12-$name 4 $impl leaf.p12
    seed crl-pem-$name 5 $impl crl.pem
    seed crl-der-pem-$name 5 $impl crl.der crl.pem
done
