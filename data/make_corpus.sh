#!/bin/sh
# make_corpus.sh -- regenerates data/fortunes.txt, Strata's default training corpus, from the
# plain-text fortune files of Debian's `fortunes` package (and `fortunes-min`, which it pulls
# in: fortunes, literature, riddles). The offensive sets (package `fortunes-off`, installed
# under /usr/share/games/fortunes/off/) are never read: only regular files directly in the
# directory are taken. See data/README.md for the licence and the train/validation split.
#
# Normalisation, so the text is plain 7-bit ASCII for the byte-level (vocabulary 256) model:
#   1. files in C-locale sorted order, skipping the index files (*.dat) and links (*.u8);
#   2. UTF-8 transliterated to ASCII (iconv //TRANSLIT; e.g. an e-acute becomes e);
#   3. overstrike sequences "X<backspace>" removed, then every control byte other than
#      tab and newline deleted;
#   4. each "%" separator line becomes an empty line, so fortunes are separated by blank lines.
# Usage: data/make_corpus.sh [SRC_DIR] [OUT_FILE]
set -eu
SRC=${1:-/usr/share/games/fortunes}
OUT=${2:-$(dirname "$0")/fortunes.txt}
[ -d "$SRC" ] || { echo "make_corpus.sh: $SRC not found; install it with: apt-get install fortunes" >&2; exit 1; }
FILES=$(cd "$SRC" && LC_ALL=C find . -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | LC_ALL=C sort)
[ -n "$FILES" ] || { echo "make_corpus.sh: no fortune files in $SRC" >&2; exit 1; }
(cd "$SRC" && cat $FILES) \
  | iconv -f UTF-8 -t ASCII//TRANSLIT \
  | LC_ALL=C sed 's/.\x08//g' \
  | LC_ALL=C tr -d '\000-\010\013-\037\177' \
  | LC_ALL=C sed 's/^%$//' > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "make_corpus.sh: wrote $OUT ($(wc -c < "$OUT") bytes from $(echo "$FILES" | wc -l) files)"
