#!/bin/sh
# The user comes from the environment at every start, never from a file in the image: the
# first boot creates it (default_user), later boots reset its password to the one given now,
# so credentials regenerated for a kept volume still work. The healthcheck passes only once
# that is done (/run/conveyor-credentials).
set -eu
: "${RABBITMQ_DEFAULT_USER:?set RABBITMQ_DEFAULT_USER}"
: "${RABBITMQ_DEFAULT_PASS:?set RABBITMQ_DEFAULT_PASS}"
user=$RABBITMQ_DEFAULT_USER
pass=$RABBITMQ_DEFAULT_PASS
conf=/etc/rabbitmq/conf.d/10-conveyor.conf
mkdir -p /etc/rabbitmq/conf.d
rm -f /run/conveyor-credentials
umask 077
cat >"$conf" <<CONF
default_user = ${user}
default_pass = ${pass}
listeners.tcp.default = 5672
management.tcp.port = 15672
# Our bridges ack in batches after a Kafka commit; allow them time for it.
consumer_timeout = 900000
# RabbitMQ 4.0 still permits these deprecated features; later 4.x releases refuse them.
# Not permitting them here makes what relies on them fail in our tests, not at the next
# upgrade. 4.0.5 then refuses a transient (non-durable) non-exclusive queue declaration;
# it still accepts basic.qos with global=true, even before a quorum-queue consumer.
deprecated_features.permit.transient_nonexcl_queues = false
deprecated_features.permit.global_qos = false
CONF
# A data directory that an older RabbitMQ wrote (a 3.x volume mounted here by hand) does not
# start on 4.x, and not in a way that says why: refuse it here, by name. Every node this
# image starts records its major version; data without that record is from before it.
major=$(dpkg-query -W -f '${Version}' rabbitmq-server | cut -d. -f1)
marker=/var/lib/rabbitmq/conveyor-rabbitmq-major
if [ -n "$(ls -A "$RABBITMQ_MNESIA_BASE" 2>/dev/null)" ] &&
   [ "$(cat "$marker" 2>/dev/null)" != "$major" ]; then
  echo "conveyor: ERROR: $RABBITMQ_MNESIA_BASE was written by RabbitMQ" \
    "$(cat "$marker" 2>/dev/null || echo '3.x or older'); this is RabbitMQ $major." \
    "Start on an empty volume (see README: volumes from the Debian 12 stack)." >&2
  exit 1
fi
mkdir -p "$RABBITMQ_MNESIA_BASE"
echo "$major" >"$marker"
chown -R rabbitmq:rabbitmq /etc/rabbitmq /var/lib/rabbitmq
unset RABBITMQ_DEFAULT_USER RABBITMQ_DEFAULT_PASS

# `rabbitmqctl wait` follows this file: it waits for the node to write it, then for the
# broker to finish booting. A stale one from the last run would point at a dead process.
export RABBITMQ_PID_FILE=/var/lib/rabbitmq/conveyor-node.pid
rm -f "$RABBITMQ_PID_FILE"
ctl() { runuser -u rabbitmq -- rabbitmqctl -q "$@"; }
apply_credentials() {
  ctl wait --timeout 300 "$RABBITMQ_PID_FILE" >/dev/null
  # rabbitmqctl 4.0's change_password takes the password as an argument only: it is visible
  # to root inside this container for the instant the command runs, as the container's
  # environment is.
  if ctl list_users --no-table-headers | cut -f1 | grep -qxF "$user"; then
    ctl change_password "$user" "$pass" >/dev/null
  else
    ctl add_user "$user" "$pass" >/dev/null
  fi
  ctl set_user_tags "$user" administrator >/dev/null
  ctl set_permissions -p / "$user" '.*' '.*' '.*' >/dev/null
  touch /run/conveyor-credentials
  echo "conveyor: credentials for user $user applied"
}
# Detached (the subshell exits at once): its parent becomes PID 1, tini, which reaps it;
# runuser, which this script becomes, would leave it a zombie.
( apply_credentials & )
# setpriv execs rabbitmq-server in place, so SIGTERM from `docker stop` reaches its own
# handler, which stops the node cleanly. runuser would stay in between and SIGKILL the
# node 2 s after passing SIGTERM on. HOME as runuser sets it: the Erlang cookie that
# rabbitmqctl (run through runuser above) uses lives there.
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
  env HOME=/var/lib/rabbitmq USER=rabbitmq LOGNAME=rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server
