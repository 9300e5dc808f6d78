#!/bin/sh
# The background worker: takes work from the users API every two seconds.
set -e
mkdir -p /www
echo "service=$SERVICE repo=$REPO branch=$BRANCH sha=$SHA" > /www/index.html
(
  n=0
  while true; do
    n=$((n + 1))
    if wget -qO- "http://$API_SERVICE_HOST:$API_SERVICE_PORT/" >/dev/null 2>&1; then
      echo "worker: job $n done"
    else
      echo "worker: job $n failed: api unreachable"
    fi
    sleep 2
  done
) &
exec httpd -f -p "$PORT" -h /www
