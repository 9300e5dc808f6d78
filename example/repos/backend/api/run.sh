#!/bin/sh
# The users API: its page says what it was built from, whether the database accepts its
# credentials, and what the database and the cache say about themselves (fetched live).
set -e
mkdir -p /www/cgi-bin
cat > /www/cgi-bin/index.cgi <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "service=$SERVICE repo=$REPO branch=$BRANCH sha=$SHA"
hash=$(printf %s "$DB_PASSWORD" | sha256sum | cut -d' ' -f1)
if wget -qO- "http://$DB_SERVICE_HOST:$DB_SERVICE_PORT/auth/$hash" >/dev/null 2>&1; then
  echo "check=$SERVICE-db-auth result=ok"
else
  echo "check=$SERVICE-db-auth result=FAILED"
fi
wget -qO- "http://$DB_SERVICE_HOST:$DB_SERVICE_PORT/" || echo "check=$SERVICE-reaches-db result=FAILED"
wget -qO- "http://$CACHE_SERVICE_HOST:$CACHE_SERVICE_PORT/" || echo "check=$SERVICE-reaches-cache result=FAILED"
CGI
chmod +x /www/cgi-bin/index.cgi
echo "api: listening on :$PORT ($GREETING)"
exec httpd -f -p "$PORT" -h /www
