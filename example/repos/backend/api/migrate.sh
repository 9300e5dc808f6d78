#!/bin/sh
# The users API's schema migration: runs once the database is up, before any API pod starts.
set -e
# A Service routes a moment after its pods are ready (kube-proxy syncs its rules): retry briefly.
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  wget -qO- "http://$DB_SERVICE_HOST:$DB_SERVICE_PORT/" >/dev/null 2>&1 && break
  sleep 0.5
done
wget -qO- "http://$DB_SERVICE_HOST:$DB_SERVICE_PORT/" >/dev/null
echo "migrate: users schema v3 applied at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
