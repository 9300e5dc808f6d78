#!/bin/sh
# A stand-in database: says what it was built from, and accepts a client whose password hashes
# to its own (the password itself never leaves the pod).
set -e
mkdir -p /www/auth
echo "service=$SERVICE repo=$REPO branch=$BRANCH sha=$SHA" > /www/index.html
printf ok > "/www/auth/$(printf %s "$DB_PASSWORD" | sha256sum | cut -d' ' -f1)"
unset DB_PASSWORD
echo "db: accepting connections on :$PORT"
exec httpd -f -p "$PORT" -h /www
