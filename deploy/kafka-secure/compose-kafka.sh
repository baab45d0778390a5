#!/bin/sh
# The Kafka container of docker-compose.yml on the secure profile (the same
# settings as medsettle.secure_kafka.SecureKafka): SASL_SSL on every listener,
# SCRAM-SHA-512 for clients and brokers, PLAIN over TLS for the controller,
# the StandardAuthorizer denying whatever no ACL allows, `admin` the only super
# user. The SCRAM users (one per service, registry, gateway, admin) are
# created when the storage is first formatted, with the passwords of the
# environment; the certificates come from `make kafka-certs`, mounted on /certs.
set -eu
: "${KAFKA_ADMIN_PASSWORD:?}"
data=/var/lib/kafka/data
conf=/tmp/server.properties
keystore_password=$(cat /certs/broker.password)
cat > "$conf" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@kafka:9093
listeners=SECURE://:9092,CONTROLLER://:9093
advertised.listeners=SECURE://kafka:9092
listener.security.protocol.map=SECURE:SASL_SSL,CONTROLLER:SASL_SSL
inter.broker.listener.name=SECURE
controller.listener.names=CONTROLLER
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.secure.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.secure.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}";
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}" user_admin="${KAFKA_ADMIN_PASSWORD}";
ssl.keystore.type=PKCS12
ssl.keystore.location=/certs/broker.p12
ssl.keystore.password=${keystore_password}
ssl.truststore.type=PEM
ssl.truststore.location=/certs/ca.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin
log.dirs=${data}
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
unclean.leader.election.enable=false
PROPERTIES
chmod 600 "$conf"
# the admin's client settings, for the health check
cat > /tmp/admin.properties <<PROPERTIES
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}";
ssl.truststore.type=PEM
ssl.truststore.location=/certs/ca.pem
PROPERTIES
chmod 600 /tmp/admin.properties
if [ ! -f "$data/meta.properties" ]; then
    set -- --add-scram "SCRAM-SHA-512=[name=admin,password=${KAFKA_ADMIN_PASSWORD}]"
    for principal in eligibility basic insurer assistance backstop settlement operations registry gateway; do
        variable=KAFKA_PASSWORD_$(echo "$principal" | tr a-z A-Z)
        eval "password=\${$variable:?set $variable}"
        set -- "$@" --add-scram "SCRAM-SHA-512=[name=${principal},password=${password}]"
    done
    /opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t "${CLUSTER_ID:-$(/opt/kafka/bin/kafka-storage.sh random-uuid)}" \
        -c "$conf" "$@"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$conf"
