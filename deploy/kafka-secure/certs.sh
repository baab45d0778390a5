#!/bin/sh
# A CA and the broker's certificate for the secure Kafka profile, into $1
# (default .kafka-certs/, ignored by git: no key is ever committed).
#   ca.pem, ca.key          the CA (clients trust ca.pem)
#   broker.p12               the broker's key and certificate (PKCS#12, password in broker.password)
#   ca.key                   the CA's key (mode 600; not mounted anywhere it is not needed)
# The certificate names localhost, 127.0.0.1 and kafka (compose's host name).
# Made once; delete the folder to make new ones.
set -eu
dir=${1:-.kafka-certs}
if [ -f "$dir/broker.p12" ] && [ -f "$dir/ca.pem" ]; then
    exit 0
fi
mkdir -p "$dir"
chmod 755 "$dir"  # compose's Kafka container (another uid) reads the keystore and its password
cd "$dir"
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=medsettle test CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kafka" -keyout broker.key -out broker.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,DNS:kafka,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > broker.ext
openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile broker.ext -out broker.pem 2>/dev/null
openssl rand -hex 24 > broker.password
openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
    -passout "file:broker.password" -out broker.p12
chmod 644 ca.pem broker.p12 broker.password
rm -f broker.csr broker.ext ca.srl broker.key  # the key lives on in broker.p12 only; ca.key stays 600
echo "certificates in $dir"
