#!/bin/sh
# Checks of everything in monitoring/, run inside the monitoring image (where promtool and
# amtool are): `make monitoring-check`. Exits non-zero on the first failure.
set -eu
cd "$(dirname "$0")"

promtool check config prometheus.yml      # and the rule files it names
promtool test rules tests/*.yml

# Every alert has a unit test where it fires and one where it does not (exp_alerts: []),
# but the heartbeat, which always fires.
awk '
  FILENAME ~ /^rules\// && $1 == "-" && $2 == "alert:" { alerts[$3] = 1 }
  FILENAME ~ /^tests\// && $1 == "alertname:" { name = $2 }
  FILENAME ~ /^tests\// && $1 == "exp_alerts:" {
    if ($2 == "[]") quiet[name] = 1; else fires[name] = 1
  }
  END {
    for (a in alerts) {
      if (!(a in fires)) { print "no test where " a " fires"; bad = 1 }
      if (!(a in quiet) && a != "ConveyorWatchdog") { print "no test where " a " stays quiet"; bad = 1 }
    }
    exit bad
  }' rules/*.yml tests/*.yml

amtool check-config alertmanager.yml
grep -v -e '^#' -e '^[[:space:]]*$' tests/routes.txt | while read -r receiver labels; do
  # Output only on failure: Debian's amtool warns at every call that --config.file
  # overrides its default --alertmanager.url.
  # shellcheck disable=SC2086  # one argument per label
  out=$(amtool config routes test --config.file=alertmanager.yml \
    --verify.receivers="$receiver" $labels 2>&1) \
    || { echo "$out"; echo "route: $labels should reach $receiver"; exit 1; }
done
echo "monitoring: config, rules, alert tests and routes OK"
