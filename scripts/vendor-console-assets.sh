#!/usr/bin/env bash
# Refresh the console's vendored scripts from the npm registry (development time only:
# nothing is fetched at run time, and the files are committed with their licences).
# Usage: bash scripts/vendor-console-assets.sh   (then update the versions in
# console/templates/base.html and console/static/vendor/VENDORED.md)
set -euo pipefail
HTMX=2.0.11
TUS=4.3.1
dest="$(cd "$(dirname "$0")/.." && pwd)/console/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "htmx.org@$HTMX" "tus-js-client@$TUS" >/dev/null
mkdir htmx tus
tar xzf "htmx.org-$HTMX.tgz" -C htmx
tar xzf "tus-js-client-$TUS.tgz" -C tus
cp htmx/package/dist/htmx.min.js "$dest/htmx-$HTMX.min.js"
cp htmx/package/LICENSE "$dest/htmx-LICENSE.txt"
cp tus/package/dist/tus.min.js "$dest/tus-$TUS.min.js"
cp tus/package/LICENSE "$dest/tus-js-client-LICENSE.txt"
(cd "$dest" && sha256sum "htmx-$HTMX.min.js" "tus-$TUS.min.js")
