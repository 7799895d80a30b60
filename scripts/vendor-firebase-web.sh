#!/usr/bin/env bash
# Copies the Firebase web SDK's self-contained ES module builds of firebase/app and
# firebase/auth from an installed npm `firebase` package into the gateway's web assets.
# The auth build imports the app build by its absolute CDN address; that import is
# rewritten to the sibling file, so the web app loads nothing from another host, and the
# source-map comments are dropped (the maps are not vendored).
# Usage: scripts/vendor-firebase-web.sh <node_modules/firebase> <target directory>
set -euo pipefail
package="$1"
target="$2"
version="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$package/package.json")"
mkdir -p "$target"
for module in app auth; do
  sed -E \
    -e 's#"https://[^"]*/firebase-app\.js"#"./firebase-app.js"#g' \
    -e '/^\/\/# sourceMappingURL=/d' \
    "$package/firebase-$module.js" >"$target/firebase-$module.js"
done
if grep -Eq '(from ?|import ?\()"https?://' "$target"/firebase-*.js; then
  echo "a vendored Firebase module still imports from a CDN" >&2
  exit 1
fi
cp "$package/LICENSE" "$target/FIREBASE-LICENSE" 2>/dev/null || true
echo "$version" >"$target/FIREBASE-VERSION"
echo "vendored firebase $version into $target"
