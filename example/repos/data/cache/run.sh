#!/bin/sh
# A stand-in cache.
set -e
mkdir -p /www
echo "service=$SERVICE repo=$REPO branch=$BRANCH sha=$SHA" > /www/index.html
echo "cache: ready on :$PORT (max memory $MAX_MEMORY)"
exec httpd -f -p "$PORT" -h /www
