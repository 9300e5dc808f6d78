#!/bin/sh
# The gateway: the sandbox's front door. Its page gathers, live, what every service says about
# the branch and commit it was built from. Which services: one name a line in $UPSTREAMS_FILE
# (the chart's subchart `upstreams` renders it), each reached through NAME_SERVICE_HOST/PORT.
set -e
mkdir -p /www/cgi-bin
cat > /www/cgi-bin/index.cgi <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "service=$SERVICE repo=$REPO branch=$BRANCH sha=$SHA"
upstreams=${UPSTREAMS_FILE:-/etc/gateway/upstreams}
[ -r "$upstreams" ] || echo "check=gateway-reads-upstreams result=FAILED"
for upstream in $(cat "$upstreams" 2>/dev/null); do
  eval host=\$${upstream}_SERVICE_HOST port=\$${upstream}_SERVICE_PORT
  wget -qO- "http://$host:$port/" || echo "check=gateway-reaches-$upstream result=FAILED"
done
CGI
chmod +x /www/cgi-bin/index.cgi
echo "gateway: serving on :$PORT, gathering $(tr '\n' ' ' < "${UPSTREAMS_FILE:-/etc/gateway/upstreams}" || echo 'nothing: no upstreams file')"
exec httpd -f -p "$PORT" -h /www
