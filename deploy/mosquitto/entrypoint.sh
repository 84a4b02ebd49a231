#!/bin/sh
# Builds mosquitto's password file from the environment (.env) at every start, so passwords live
# in one place and never in the image; a missing one stops the broker with its variable's name.
# Each reader has a user of its own (reader-<bus>, the ACL's): its password is made at the first
# start in $dir/secrets/<user>/password, the volume that reader mounts (and no other).
# A "health" user with a random password, made anew each start, serves the container healthcheck.
set -eu
dir="${MOSQUITTO_DIR:-/mosquitto}"
pw="$dir/data/passwd"
umask 077
mkdir -p "$dir/data"
rm -f "$pw"
touch "$pw"
for user in api publisher modbus history notifier tunnel admin homeassistant viewer; do
  var="MQTT_$(echo "$user" | tr '[:lower:]' '[:upper:]')_PASSWORD"
  eval "secret=\${$var:-}"
  if [ -z "$secret" ]; then
    echo "mosquitto: $var is not set (see deploy/example.env)" >&2
    exit 1
  fi
  mosquitto_passwd -b "$pw" "$user" "$secret"
done
random() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
for user in $(sed -n 's/^user \(reader-[0-9][0-9]*\)$/\1/p' "${MOSQUITTO_ACL:-$dir/config/acl}"); do
  secret="$dir/secrets/$user/password"
  mkdir -p "$dir/secrets/$user"
  if [ ! -s "$secret" ]; then
    random >"$secret.new"
    mv "$secret.new" "$secret"
  fi
  # the reader containers' user (uid 10001, the Dockerfile's) reads it; nobody else
  chown -R "${READER_UID:-10001}" "$dir/secrets/$user"
  chmod 0700 "$dir/secrets/$user"
  chmod 0400 "$secret"
  mosquitto_passwd -b "$pw" "$user" "$(cat "$secret")"
done
health="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mosquitto_passwd -b "$pw" health "$health"
printf '%s' "$health" >"$dir/data/health.pw"
# mosquitto reads the file after dropping to its own user
chown mosquitto "$pw" "$dir/data/health.pw" "$dir/data"
exec mosquitto -c "${MOSQUITTO_CONF:-$dir/config/mosquitto.conf}"
