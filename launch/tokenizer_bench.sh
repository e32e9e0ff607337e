#!/usr/bin/env bash
# tokenizer_bench.sh -- GPT-2 BPE encoding throughput, one thread: Strata's tokenizer
# (build/tests/bpe_bench) beside npm's js-tiktoken (tiktoken's gpt2 encoding in JavaScript) on
# the same file in the same run. Each encodes the whole file RUNS times with one tokenizer: the
# first run cold (empty caches), then the best; MB = 1e6 bytes. CPU time (the process's own) is
# the figure to compare on a shared machine; wall-clock is printed beside it. The token counts
# must agree (the same ids: tests/tokenizer checks them exactly).
#
# Usage: launch/tokenizer_bench.sh [BUILD] [FILE] [RUNS]
#   BUILD  build directory (default build), FILE text (default data/fortunes.txt, English
#   prose), RUNS (default 5). js-tiktoken@1.0.21 is installed with npm into $STRATA_NPM_CACHE
#   (default ~/.cache/strata-npm) when missing; without node or npm its row says so.
# Output: CSV on stdout: impl,bytes,tokens,cold_cpu_mb_s,best_wall_mb_s,best_cpu_mb_s
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
FILE="${2:-$ROOT/data/fortunes.txt}"
RUNS="${3:-5}"
CACHE="${STRATA_NPM_CACHE:-$HOME/.cache/strata-npm}"
[ -x "$BUILD/tests/bpe_bench" ] || { echo "tokenizer_bench.sh: $BUILD/tests/bpe_bench is missing: build first" >&2; exit 2; }
[ -r "$FILE" ] || { echo "tokenizer_bench.sh: cannot read $FILE" >&2; exit 2; }

echo "impl,bytes,tokens,cold_cpu_mb_s,best_wall_mb_s,best_cpu_mb_s"
# "bpe_bench: FILE BYTES bytes TOKENS tokens cold cpu C MB/s best wall W MB/s cpu B MB/s"
"$BUILD/tests/bpe_bench" "$FILE" "$RUNS" |
  awk '{ print "strata," $3 "," $5 "," $9 "," $13 "," $16 }'

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "tokenizer_bench.sh: node or npm is not installed: no js-tiktoken row (apt-get install nodejs npm)" >&2
  exit 0
fi
if [ ! -f "$CACHE/node_modules/js-tiktoken/package.json" ]; then
  mkdir -p "$CACHE"
  npm install --no-audit --no-fund --prefix "$CACHE" js-tiktoken@1.0.21 >&2 ||
    { echo "tokenizer_bench.sh: npm could not install js-tiktoken: no js-tiktoken row" >&2; exit 0; }
fi
NODE_PATH="$CACHE/node_modules" node -e '
const fs = require("fs");
const { Tiktoken } = require("js-tiktoken/lite");
const g = require("js-tiktoken/ranks/gpt2");
const [file, runs] = [process.argv[1], +process.argv[2]];
const buf = fs.readFileSync(file), text = buf.toString("utf8");
const enc = new Tiktoken(g.default || g);
let cold = 0, bestW = Infinity, bestC = Infinity, n = 0;
for (let r = 0; r < runs; r++) {
  const c0 = process.cpuUsage(), w0 = process.hrtime.bigint();
  n = enc.encode(text, [], []).length;
  const w = Number(process.hrtime.bigint() - w0) / 1e9, cu = process.cpuUsage(c0), c = (cu.user + cu.system) / 1e6;
  if (r === 0) cold = c;
  bestW = Math.min(bestW, w); bestC = Math.min(bestC, c);
}
const mb = buf.length / 1e6;
console.log(`js-tiktoken,${buf.length},${n},${(mb / cold).toFixed(1)},${(mb / bestW).toFixed(1)},${(mb / bestC).toFixed(1)}`);
' "$FILE" "$RUNS"
