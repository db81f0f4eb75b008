#!/bin/sh
# serve.sh PORT: the app. Says where it listens, then serves site/ on 127.0.0.1:PORT in the foreground,
# logging each request to stderr.
port=${1:-8080}
echo "inventory: serving site/ on 127.0.0.1:$port"
if command -v python3 >/dev/null 2>&1; then
  exec python3 -m http.server "$port" --bind 127.0.0.1 --directory site
fi
exec /run/pyro/busybox httpd -f -vv -p "127.0.0.1:$port" -h site
