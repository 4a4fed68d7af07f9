#!/usr/bin/env bash
# Look at the HTML report as a browser shows it: headless Chromium takes a screenshot.
#   bash bench/report_screenshot.sh RUN_DIR [OUT.png]
# Needs Debian's chromium (apt-get install chromium). The page is self-contained (images inline).
set -euo pipefail
run="$1"; out="${2:-report.png}"
elt report "$run" --html >/dev/null
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1600 \
  --screenshot="$out" "file://$(realpath "$run")/report/report.html" 2>/dev/null
echo "screenshot: $out"
