#!/usr/bin/env bash
# Copies the monitoring-as-code files the Helm chart ships, because Helm's .Files can only read
# inside the chart folder:
#   grafana/dashboards/*.json          -> helm/crypto-watcher/dashboards/
#   prometheus/rules/*.yml (not *.test.yml, which are promtool unit tests)
#                                      -> helm/crypto-watcher/prometheus-rules/
# Copies, not symlinks: `helm package` and OCI pushes must carry the real files.
# Usage:
#   scripts/sync-chart-dashboards.sh          copy new/changed files, delete copies whose original is gone
#   scripts/sync-chart-dashboards.sh --check  change nothing; exit 1 and list the differences if out of sync
# tests/deploy/test_helm.py and scripts/check-deploy.sh run the --check form, so a dashboard or
# rule edited without a sync fails the checks.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$REPO_ROOT/helm/crypto-watcher"

mode=sync
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

shopt -s nullglob
problems=0
total=0

# sync_dir SRC_DIR DST_DIR GLOB [EXCLUDE_GLOB]
sync_dir() {
  local src_dir=$1 dst_dir=$2 glob=$3 exclude=${4:-}
  local rel_dst=${dst_dir#"$REPO_ROOT/"} rel_src=${src_dir#"$REPO_ROOT/"}
  mkdir -p "$dst_dir"
  local src dst name
  for src in "$src_dir"/$glob; do
    name=$(basename "$src")
    # shellcheck disable=SC2053  # $exclude is a glob on purpose
    [[ -n "$exclude" && $name == $exclude ]] && continue
    total=$((total + 1))
    if ! cmp -s "$src" "$dst_dir/$name"; then
      if [[ $mode == check ]]; then
        echo "out of sync: $rel_dst/$name differs from $rel_src/$name (or is missing)" >&2
        problems=1
      else
        cp "$src" "$dst_dir/$name"
        echo "copied $rel_src/$name"
      fi
    fi
  done
  for dst in "$dst_dir"/$glob; do
    name=$(basename "$dst")
    # shellcheck disable=SC2053  # $exclude is a glob on purpose
    if [[ ! -f "$src_dir/$name" ]] || [[ -n "$exclude" && $name == $exclude ]]; then
      if [[ $mode == check ]]; then
        echo "stale: $rel_dst/$name has no original in $rel_src/" >&2
        problems=1
      else
        rm -f "$dst"
        echo "removed $rel_dst/$name"
      fi
    fi
  done
}

sync_dir "$REPO_ROOT/grafana/dashboards" "$CHART/dashboards" "*.json"
sync_dir "$REPO_ROOT/prometheus/rules" "$CHART/prometheus-rules" "*.yml" "*.test.yml"

if [[ $mode == check ]]; then
  if ((problems)); then echo "run scripts/sync-chart-dashboards.sh" >&2; exit 1; fi
  echo "chart copies in sync ($total files)"
fi
