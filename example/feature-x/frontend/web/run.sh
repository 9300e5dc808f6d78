#!/bin/sh
# The web front end.
set -e
mkdir -p /www
echo "service=$SERVICE repo=$REPO branch=$BRANCH sha=$SHA" > /www/index.html
echo "web: serving the new checkout flow on :$PORT"
exec httpd -f -p "$PORT" -h /www
