#!/bin/sh
# The gateway: the sandbox's front door. Its page gathers, live, what every service says about
# the branch and commit it was built from.
set -e
mkdir -p /www/cgi-bin
cat > /www/cgi-bin/index.cgi <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "service=$SERVICE repo=$REPO branch=$BRANCH sha=$SHA"
for upstream in WEB API ORDERS WORKER; do
  eval host=\$${upstream}_SERVICE_HOST port=\$${upstream}_SERVICE_PORT
  wget -qO- "http://$host:$port/" || echo "check=gateway-reaches-$upstream result=FAILED"
done
CGI
chmod +x /www/cgi-bin/index.cgi
echo "gateway: serving on :$PORT"
exec httpd -f -p "$PORT" -h /www
