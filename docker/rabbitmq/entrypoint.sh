#!/bin/sh
# The default user comes from the environment at start, never from a file in the image.
set -eu
: "${RABBITMQ_DEFAULT_USER:?set RABBITMQ_DEFAULT_USER}"
: "${RABBITMQ_DEFAULT_PASS:?set RABBITMQ_DEFAULT_PASS}"
conf=/etc/rabbitmq/conf.d/10-conveyor.conf
mkdir -p /etc/rabbitmq/conf.d
umask 077
cat >"$conf" <<CONF
default_user = ${RABBITMQ_DEFAULT_USER}
default_pass = ${RABBITMQ_DEFAULT_PASS}
listeners.tcp.default = 5672
management.tcp.port = 15672
# Our bridges ack in batches after a Kafka commit; allow them time for it.
consumer_timeout = 900000
CONF
chown -R rabbitmq:rabbitmq /etc/rabbitmq /var/lib/rabbitmq
unset RABBITMQ_DEFAULT_USER RABBITMQ_DEFAULT_PASS
exec runuser -u rabbitmq -- /usr/lib/rabbitmq/bin/rabbitmq-server
