#!/usr/bin/env bash
# Tools some tests use when present (they skip with a note when absent), from Debian:
#   chromium          test/e2e/report-chromium.test.ts lays the report out at two widths
#   python3-protobuf  test/track/track.test.ts reads TensorBoard event files back with the official
#                     protobuf runtime (test/helpers/read_tfevents.py)
#   fonts-dejavu-core a font for Chromium to measure text with
#   clang-format      npm run lint checks native/ against .clang-format
# Needs root (or sudo); does nothing when everything is installed.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
/usr/bin/python3 -c 'import google.protobuf' >/dev/null 2>&1 || need+=(python3-protobuf)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v clang-format >/dev/null 2>&1 || need+=(clang-format)
if [ ${#need[@]} -eq 0 ]; then echo "test tools: installed"; exit 0; fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "test tools: installing ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}"
