#!/bin/sh
# Builds mosquitto's password file from the environment (.env) at every start, so passwords live
# in one place and never in the image; a missing one stops the broker with its variable's name.
# A "health" user with a random password, made anew each start, serves the container healthcheck.
set -eu
dir="${MOSQUITTO_DIR:-/mosquitto}"
pw="$dir/data/passwd"
umask 077
mkdir -p "$dir/data"
rm -f "$pw"
touch "$pw"
for user in reader api publisher modbus history notifier tunnel admin homeassistant viewer; do
  var="MQTT_$(echo "$user" | tr '[:lower:]' '[:upper:]')_PASSWORD"
  eval "secret=\${$var:-}"
  if [ -z "$secret" ]; then
    echo "mosquitto: $var is not set (see deploy/example.env)" >&2
    exit 1
  fi
  mosquitto_passwd -b "$pw" "$user" "$secret"
done
health="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mosquitto_passwd -b "$pw" health "$health"
printf '%s' "$health" >"$dir/data/health.pw"
# mosquitto reads the file after dropping to its own user
chown mosquitto "$pw" "$dir/data/health.pw" "$dir/data"
exec mosquitto -c "${MOSQUITTO_CONF:-$dir/config/mosquitto.conf}"
