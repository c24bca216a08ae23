#!/usr/bin/env bash
# The README's four demo screenshots, taken from the real app under Xvfb (docs/decisions/0015).
# Needs: apt-get install -y xvfb xauth libxkbcommon-x11-0 libxcb-cursor0 ... (docs/GUIDE or README).
# Each demo runs in a fresh HOME so its small run is trained as on a first open; prints the seconds
# from the command's start to the populated view ("ready") for each domain.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/screenshots}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for domain in product sar wildlife video; do
  home=$(mktemp -d)
  start=$(date +%s.%N)
  HOME=$home ANOMALY_GUI_SETTINGS_DIR=$home/settings xvfb-run -a -s "-screen 0 1600x1000x24" \
    python -m anomaly_gui demo "$domain" --screenshot "$out/demo_$domain.png" 2> "$home/log.txt" || true
  ready=$(grep -o 'at [0-9.]* (epoch s)' "$home/log.txt" | grep -o '[0-9.]*' | head -1 || true)
  grep 'ready:' "$home/log.txt" || tail -5 "$home/log.txt"
  [ -n "$ready" ] && python -c "print('$domain: command start -> main view ready: %.1f s' % ($ready - $start))"
  rm -rf "$home"
done
