#!/usr/bin/env bash
# Rebuilds vega-offline.html: DVC's plot page with Vega, Vega-Lite and vega-embed inlined (the
# versions `dvc plots show` loads from a CDN), so the page works without internet. Needs npm.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2 >/dev/null)
for pkg in vega-5.20.2 vega-lite-5.2.0 vega-embed-6.18.2; do
  mkdir -p "$work/$pkg" && tar xzf "$work/$pkg.tgz" -C "$work/$pkg"
done
{
  echo '<!DOCTYPE html>'
  echo '<html>'
  echo '<head>'
  echo '    {refresh_tag}'
  echo '    <title>DVC Plot</title>'
  echo '    <!-- Vega 5.20.2, Vega-Lite 5.2.0, vega-embed 6.18.2 (BSD-3-Clause, assets/LICENSE-vega.txt), inlined -->'
  for js in vega-5.20.2/package/build/vega.min.js vega-lite-5.2.0/package/build/vega-lite.min.js \
            vega-embed-6.18.2/package/build/vega-embed.min.js; do
    printf '    <script type="text/javascript">\n'; cat "$work/$js"; printf '\n    </script>\n'
  done
  echo '    <style> table { border-spacing: 15px; } </style>'
  echo '</head>'
  echo '<body>'
  echo '    {plot_divs}'
  echo '</body>'
  echo '</html>'
} > vega-offline.html
{
  for pkg in vega-5.20.2 vega-lite-5.2.0 vega-embed-6.18.2; do
    echo "== ${pkg%-*} ${pkg##*-} =="; cat "$work/$pkg/package/LICENSE"; echo
  done
} > LICENSE-vega.txt
