#!/usr/bin/env bash
# Writes the image repository into a chart's values.yaml (image.repository), as the release does
# before packaging: only the release knows the owner part of ghcr.io/<owner>/crypto-watcher, and
# the chart it publishes must default to the image the same release pushed. The chart in the
# repository keeps an empty repository, so a checkout never installs a guessed image.
# Usage: scripts/set-chart-image.sh CHART_DIR REPOSITORY   (e.g. helm/crypto-watcher ghcr.io/acme/crypto-watcher)
set -euo pipefail
[[ $# -eq 2 ]] || { sed -n '2,7p' "$0" >&2; exit 2; }
chart=$1 repository=$2
values="$chart/values.yaml"
[[ -f "$values" ]] || { echo "set-chart-image: no $values" >&2; exit 1; }
# Registries refuse capitals in repository names (GHCR included): a stamped capital would only fail
# at the first pull, so refuse it here.
if ! [[ "$repository" =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)+$ ]]; then
  echo "set-chart-image: '$repository' is not an image repository in lower case (registry/path/name)" >&2
  exit 1
fi
# The one line `  repository: ""` of the image block; anything else means values.yaml changed shape.
if [[ "$(grep -c '^  repository: ""$' "$values")" != 1 ]]; then
  echo "set-chart-image: $values has no single empty image.repository line to set (already set?)" >&2
  exit 1
fi
sed -i "s|^  repository: \"\"\$|  repository: $repository|" "$values"
echo "set-chart-image: $values image.repository = $repository"
