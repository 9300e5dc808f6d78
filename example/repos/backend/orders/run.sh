#!/bin/sh
# The orders API.
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
CGI
chmod +x /www/cgi-bin/index.cgi
echo "orders: listening on :$PORT"
exec httpd -f -p "$PORT" -h /www
