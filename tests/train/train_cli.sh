#!/usr/bin/env bash
# End-to-end tests of `strata train` and `strata eval` on one rank. Usage: train_cli.sh STRATA CASE
#   determinism  two runs with the same seed write identical losses and identical weights
#   resume       a run resumed from its step-6 checkpoint continues bit-identically to step 12
#                (losses, weights and AdamW moments; also in the sanitizer build)
#   eval         eval --json of the final checkpoint scores the held-out split by default, equal
#                (1e-6) to train's validation loss over the same --eval-tokens whatever --batch
#                groups the sequences; --split train scores the training split
#   hfconfig     a byte model's checkpoint has bos/eos 0 in config.json and a tokenizer.json whose
#                vocabulary is GPT-2's byte-to-character map (an independent Python reference);
#                with Python's `transformers` installed, AutoTokenizer loads the directory and
#                round-trips text byte for byte (else that part says it is skipped)
#   config       --config: a published GPT-2 config.json at a small width (flags win, vocab 50257
#                brings GPT-2's tokenizer), a config alone, and bad configs refused with exit 2
#   badflags     bad flags and configurations are refused with exit 2 and a message
# --arch llama (a tiny Llama: dim 64, 2 layers, 4 heads, 2 kv heads, ctx 32):
#   llama_loop     the losses of 6 steps (2 micro-batches) equal, to 1e-6 relative, those of a plain
#                  loop over llama.h / data.h / adamw.h (tests/train/llama_loop.c, 3rd argument),
#                  and fall over 30 steps
#   llama_ckpt     the checkpoint: config.json's LlamaConfig keys and values, every tensor of
#                  model.safetensors by LlamaForCausalLM name and shape, the AdamW moments
#   llama_resume   a run resumed from its step-6 checkpoint continues bit-identically (losses,
#                  weights, moments); a GPT-2 checkpoint resumed with --arch llama and the reverse
#                  exit 2 naming the family; a Llama flag differing from the checkpoint is refused
#   llama_eval     eval of a Llama checkpoint equals train's validation loss (1e-6), and so does
#                  train --eval-only
#   llama_config   --config with a Hugging Face LlamaConfig (flags win), and bad ones (exit 2)
#   llama_infer    infer of a Llama checkpoint: greedy token ids equal the plain loop's
#                  (llama_loop --greedy), a seeded sample repeats (the engine's Llama paths:
#                  tests/infer, tests/session, tests/serve_e2e)
#   llama_badflags Llama flags without --arch llama, pipeline flags or a --dp without its ranks
#                  with it, bad shapes, a resume in another --precision: exit 2 (Llama's
#                  --precision itself: tests/train/precision.sh)
set -euo pipefail
STRATA="$1"; CASE="$2"
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
SMALL=(--layers 2 --heads 2 --dim 32 --ctx 32 --batch 4 --quiet --eval-tokens 128)
LLAMA=(--arch llama --layers 2 --heads 4 --kv-heads 2 --dim 64 --ctx 32 --batch 4 --quiet --eval-tokens 128)
fail() { echo "FAIL: $*" >&2; exit 1; }
losses() { sed -E 's/.*"loss": ([^,]*),.*/\1/' "$1"; }
expect_fail() { # expect_fail PATTERN ARGS...: `strata ARGS` exits 2 with PATTERN in its output
  local pat="$1"; shift
  set +e; out=$("$STRATA" "$@" 2>&1); code=$?; set -e
  [ "$code" -eq 2 ] || fail "'$*' exited $code, expected 2 (output: $out)"
  grep -q -- "$pat" <<<"$out" || fail "'$*' message lacks '$pat': $out"
}
# resume_12 FLAGS...: a 12-step run checkpointed at 6, resumed from step 6 into $W/resumed,
# continues bit-identically (losses, weights, moments)
resume_12() {
  "$STRATA" train "$@" --steps 12 --ckpt-every 6 --warmup 3 --out "$W/full"
  "$STRATA" train --quiet --resume "$W/full/ckpt-00000006" --out "$W/resumed"
  diff <(losses "$W/full/steps.jsonl" | tail -6) <(losses "$W/resumed/steps.jsonl") || fail "resumed losses differ"
  for f in model.safetensors optimizer.safetensors config.json; do
    cmp "$W/full/ckpt-00000012/$f" "$W/resumed/ckpt-00000012/$f" || fail "resumed $f differs"
  done
}

case "$CASE" in
determinism)
  "$STRATA" train "${SMALL[@]}" --steps 8 --seed 7 --out "$W/a"
  "$STRATA" train "${SMALL[@]}" --steps 8 --seed 7 --out "$W/b"
  "$STRATA" train "${SMALL[@]}" --steps 8 --seed 8 --out "$W/c"
  [ "$(wc -l < "$W/a/steps.jsonl")" -eq 8 ] || fail "expected 8 lines in steps.jsonl"
  diff <(losses "$W/a/steps.jsonl") <(losses "$W/b/steps.jsonl") || fail "same seed, different losses"
  cmp "$W/a/ckpt-00000008/model.safetensors" "$W/b/ckpt-00000008/model.safetensors" || fail "same seed, different weights"
  ! diff -q <(losses "$W/a/steps.jsonl") <(losses "$W/c/steps.jsonl") >/dev/null || fail "different seeds gave identical losses"
  # The loss must fall: the last step's loss is below the first's.
  first=$(losses "$W/a/steps.jsonl" | head -1); last=$(losses "$W/a/steps.jsonl" | tail -1)
  awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f) }' || fail "loss did not fall ($first -> $last)"
  grep -q '"world_size": 1' "$W/a/report.json" || fail "report.json lacks world_size"
  grep -q '"final_loss"' "$W/a/report.json" || fail "report.json lacks final_loss"
  ;;
resume)
  # --warmup 3: the resumed steps run on the cosine decay, whose floor comes from the
  # checkpoint's min_lr / lr; AdamW's betas, eps and weight decay come from it too.
  resume_12 "${SMALL[@]}"
  # --resume auto picks the newest valid checkpoint in --out and refuses to go nowhere.
  out=$("$STRATA" train --quiet --resume auto --out "$W/full" 2>&1) && fail "resume at the final step should fail"
  grep -q "already at --steps" <<<"$out" || fail "unexpected message: $out"
  "$STRATA" train --quiet --resume auto --steps 14 --out "$W/full"
  [ -d "$W/full/ckpt-00000014" ] || fail "resume auto did not continue to step 14"
  ;;
eval)
  "$STRATA" train "${SMALL[@]}" --steps 4 --eval-tokens 256 --out "$W/a"
  val=$(sed -nE 's/.*"val_loss": ([0-9.e-]+).*/\1/p' "$W/a/report.json")
  grep -q '"val_tokens": 256' "$W/a/report.json" || fail "report.json lacks val_tokens 256"
  out=$("$STRATA" eval --checkpoint "$W/a/ckpt-00000004" --tokens 256 --batch 3 --json)
  grep -Eq '^\{"loss": [0-9.]+, "bits": [0-9.]+, "tokens": 256, "sequences": 8, "seq_len": 32, "split": "val", "precision": "fp32"\}$' <<<"$out" \
    || fail "unexpected eval output: $out"
  loss=$(echo "$out" | sed -E 's/.*"loss": ([0-9.]+).*/\1/')
  bits=$(echo "$out" | sed -E 's/.*"bits": ([0-9.]+).*/\1/')
  # the same 8 held-out sequences as train's validation, in passes of 3 + 3 + 2 (padded) against
  # train's 4 + 4: the positions' losses are summed in double, so only float rounding inside a
  # forward pass may differ (far below 1e-6 for 256 positions)
  awk -v a="$loss" -v b="$val" 'BEGIN { d = a - b; exit !(d < 1e-6 && d > -1e-6) }' \
    || fail "eval loss $loss differs from train's validation loss $val"
  awk -v l="$loss" -v b="$bits" 'BEGIN { d = l / log(2) - b; exit !(d < 1e-6 && d > -1e-6) }' \
    || fail "bits $bits is not loss $loss / ln 2"
  # A 256-way byte model after 4 steps is far from uniform ln(256)=5.55 only if it learnt; it
  # must at least be a finite loss below uniform + 1.
  awk -v l="$loss" 'BEGIN { exit !(l > 0 && l < 6.6) }' || fail "implausible loss $loss"
  text=$("$STRATA" eval --checkpoint "$W/a/ckpt-00000004" --tokens 256)
  grep -q "nats/byte (.* bits/byte) over 256 tokens (8 sequences of 32) of the validation split" <<<"$text" \
    || fail "unexpected eval text: $text"
  tr=$("$STRATA" eval --checkpoint "$W/a/ckpt-00000004" --tokens 256 --split train --json)
  grep -q '"split": "train"' <<<"$tr" || fail "unexpected --split train output: $tr"
  [ "$(echo "$tr" | sed -E 's/.*"loss": ([0-9.]+).*/\1/')" != "$loss" ] || fail "--split train scored the validation split"
  "$STRATA" eval --checkpoint "$W/a/ckpt-00000004" --split test 2> "$W/err.txt" && fail "--split test accepted"
  grep -q -- "--split must be val or train, got 'test'" "$W/err.txt" || fail "unexpected --split error: $(cat "$W/err.txt")"
  ;;
hfconfig)
  "$STRATA" train "${SMALL[@]}" --steps 1 --out "$W/h"
  CK="$W/h/ckpt-00000001"
  grep -q '"bos_token_id": 0' "$CK/config.json" && grep -q '"eos_token_id": 0' "$CK/config.json" \
    || fail "config.json lacks bos_token_id / eos_token_id 0: $(cat "$CK/config.json")"
  command -v python3 > /dev/null || { echo "hfconfig: python3 not found: tokenizer files not checked"; exit 0; }
  python3 - "$CK" <<'PY' || fail "tokenizer files"
import json, sys
ck = sys.argv[1]
# GPT-2's bytes_to_unicode (openai/gpt-2 encoder.py), the reference the vocabulary must match
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
want = {chr(c): b for b, c in zip(bs, cs)}
t = json.load(open(ck + "/tokenizer.json"))
assert t["model"]["type"] == "BPE" and t["model"]["merges"] == [], "not a merge-free BPE"
assert t["model"]["vocab"] == want, "vocabulary is not the byte map"
assert t["pre_tokenizer"]["type"] == "ByteLevel" and t["decoder"]["type"] == "ByteLevel"
c = json.load(open(ck + "/tokenizer_config.json"))
assert want[c["eos_token"]] == 0 and want[c["bos_token"]] == 0, "bos/eos differ from config.json"
try:
    from transformers import AutoTokenizer
except ImportError:
    print("hfconfig: Python transformers not installed: AutoTokenizer load skipped")
    sys.exit(0)
tok = AutoTokenizer.from_pretrained(ck)
text = "Hello, world!\n\tcaf\u00e9 -- 42"
ids = tok.encode(text, add_special_tokens=False)
assert ids == list(text.encode("utf-8")), ids
assert tok.decode(ids) == text
assert tok.eos_token_id == 0 and tok.bos_token_id == 0
print("hfconfig: AutoTokenizer round trip ok")
PY
  ;;
badflags)
  expect_fail "unknown flag '--bogus'" train --bogus 1
  expect_fail "--steps must be an integer in \[1, 1000000000\], got 'ten'" train --steps ten
  expect_fail "needs a value" train --steps
  expect_fail "dim" train --dim 30 --heads 4 --out "$W/x"
  expect_fail "multiple of --microbatches" train --batch 6 --microbatches 4 --out "$W/x"
  expect_fail "no such file\|cannot open\|No such file" train --data "$W/missing.txt" --out "$W/x"
  : > "$W/empty.txt"
  expect_fail "empty" train --data "$W/empty.txt" --out "$W/x"
  expect_fail "required" eval
  expect_fail "eval-only scores a checkpoint: add --resume" train --eval-only --out "$W/x"
  expect_fail "less than one sequence of 32 tokens" train "${SMALL[@]}" --eval-tokens 31 --out "$W/x"
  expect_fail "config.json\|No such file\|cannot" eval --checkpoint "$W/nothing"
  ;;
config)
  # GPT-2 small's published config.json (Hugging Face "gpt2"), at a small width: the flags win,
  # vocab_size 50257 brings GPT-2's tokenizer for the text corpus
  cat >"$W/gpt2.json" <<'EOF'
{"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "bos_token_id": 50256,
 "eos_token_id": 50256, "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024,
 "n_embd": 768, "n_head": 12, "n_inner": null, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257}
EOF
  "$STRATA" train --config "$W/gpt2.json" --layers 2 --dim 32 --heads 2 --ctx 16 --batch 2 --steps 2 \
    --eval-tokens 64 --quiet --out "$W/g" 2>"$W/g.err"
  got=$(sed -n 's/.*"\(n_layer\|n_head\|n_embd\|n_positions\|vocab_size\)": \([0-9]*\).*/\1=\2/p' "$W"/g/ckpt-*/config.json | sort | paste -sd' ' -)
  [ "$got" = "n_embd=32 n_head=2 n_layer=2 n_positions=16 vocab_size=50257" ] || fail "--config with flags: $got"
  grep -q "encoded with GPT-2's shipped BPE tokenizer" "$W/g.err" || fail "vocab_size 50257 did not bring GPT-2's tokenizer: $(cat "$W/g.err")"
  # a config alone sets every dimension
  printf '{"model_type": "gpt2", "n_layer": 3, "n_head": 2, "n_embd": 24, "n_positions": 8, "vocab_size": 256}\n' >"$W/tiny.json"
  "$STRATA" train --config "$W/tiny.json" --batch 2 --steps 1 --eval-tokens 32 --quiet --out "$W/t"
  got=$(sed -n 's/.*"\(n_layer\|n_head\|n_embd\|n_positions\|vocab_size\)": \([0-9]*\).*/\1=\2/p' "$W"/t/ckpt-*/config.json | sort | paste -sd' ' -)
  [ "$got" = "n_embd=24 n_head=2 n_layer=3 n_positions=8 vocab_size=256" ] || fail "--config alone: $got"
  # bad configs: exit 2 and one sentence naming the problem
  bad() { # bad JSON PATTERN
    printf '%s\n' "$1" >"$W/bad.json"
    set +e; out=$("$STRATA" train --config "$W/bad.json" --steps 1 --out "$W/b" 2>&1); code=$?; set -e
    [ "$code" -eq 2 ] || fail "config $1: exit $code, expected 2: $out"
    grep -q -- "$2" <<<"$out" || fail "config $1: message lacks '$2': $out"
    [ ! -e "$W/b" ] || fail "config $1: a refused run wrote $W/b"
  }
  bad '{"model_type": "mistral", "hidden_size": 64}' '"model_type" is "mistral"'
  bad '{"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 16, "vocab_size": 1000}' 'vocab_size 1000'
  bad '{"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 16, "vocab_size": 256, "n_inner": 100}' 'n_inner 100'
  bad '{"model_type": "gpt2", "n_layer": 2, "n_head": 3, "n_embd": 32, "n_positions": 16, "vocab_size": 256}' 'not divisible'
  bad '{"model_type": "gpt2", "n_layer": 2' 'not a JSON object'
  set +e; out=$("$STRATA" train --config "$W/none.json" --steps 1 --out "$W/n" 2>&1); code=$?; set -e
  [ "$code" -eq 2 ] && grep -q "cannot open" <<<"$out" || fail "a missing --config: exit $code: $out"
  ;;
llama_loop)
  D="$STRATA_SOURCE_DIR/data/fortunes.txt"
  "$STRATA" train "${LLAMA[@]}" --data "$D" --steps 6 --microbatches 2 --seed 7 --lr 0.01 --warmup 2 --out "$W/a"
  "$3" "$D" 6 > "$W/ref.txt"
  [ "$(wc -l < "$W/ref.txt")" -eq 6 ] || fail "the reference printed $(wc -l < "$W/ref.txt") losses"
  paste <(losses "$W/a/steps.jsonl") "$W/ref.txt" | awk '{ d = $1 - $2; if (d < 0) d = -d;
    if (!(d <= 1e-6 * $2)) { print "step " NR ": strata " $1 ", reference " $2; bad = 1 } } END { exit bad }' \
    || fail "train --arch llama differs from the plain llama.h loop"
  "$STRATA" train "${LLAMA[@]}" --steps 30 --lr 0.01 --warmup 2 --out "$W/b"
  first=$(losses "$W/b/steps.jsonl" | head -3 | awk '{ s += $1 } END { print s / 3 }')
  last=$(losses "$W/b/steps.jsonl" | tail -3 | awk '{ s += $1 } END { print s / 3 }')
  awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f - 0.3) }' || fail "loss did not fall ($first -> $last)"
  grep -q '"arch": "llama"' "$W/b/report.json" || fail "report.json lacks arch llama"
  ;;
llama_ckpt)
  "$STRATA" train "${LLAMA[@]}" --steps 1 --ffn 96 --rope-theta 500000 --rms-norm-eps 1e-6 --out "$W/c"
  command -v python3 > /dev/null || { echo "llama_ckpt: python3 not found: checkpoint not checked"; exit 0; }
  python3 - "$W/c/ckpt-00000001" <<'PY' || fail "llama checkpoint"
import json, struct, sys
ck = sys.argv[1]
c = json.load(open(ck + "/config.json"))
want = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
        "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "rms_norm_eps": 1e-6, "rope_theta": 500000.0,
        "max_position_embeddings": 32, "vocab_size": 256, "tie_word_embeddings": False}
for k, v in want.items():
    assert c.get(k) == v, f"config.json {k} = {c.get(k)!r}, expected {v!r}"
def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"]) for k, v in h.items()}
V, C, F, Ckv = 256, 64, 96, 32
shapes = {"model.embed_tokens.weight": [V, C], "model.norm.weight": [C], "lm_head.weight": [V, C]}
for l in range(2):
    p = f"model.layers.{l}."
    shapes.update({p + "input_layernorm.weight": [C], p + "post_attention_layernorm.weight": [C],
                   p + "self_attn.q_proj.weight": [C, C], p + "self_attn.k_proj.weight": [Ckv, C],
                   p + "self_attn.v_proj.weight": [Ckv, C], p + "self_attn.o_proj.weight": [C, C],
                   p + "mlp.gate_proj.weight": [F, C], p + "mlp.up_proj.weight": [F, C],
                   p + "mlp.down_proj.weight": [C, F]})
got = header(ck + "/model.safetensors")
assert got == {k: ("F32", v) for k, v in shapes.items()}, sorted(set(got) ^ set(shapes))
opt = header(ck + "/optimizer.safetensors")
assert opt == {f"{m}.{k}": ("F32", v) for k, v in shapes.items() for m in ("exp_avg", "exp_avg_sq")}
print("llama_ckpt: config.json and", len(got), "tensors ok")
PY
  ;;
llama_resume)
  resume_12 "${LLAMA[@]}"
  expect_fail "--arch gpt differs from checkpoint .*'s llama" train --quiet --arch gpt --resume "$W/full/ckpt-00000006" --out "$W/x"
  expect_fail "--kv-heads 4 differs from checkpoint .*'s 2" train --quiet --arch llama --kv-heads 4 --resume "$W/full/ckpt-00000006" --out "$W/x"
  "$STRATA" train "${SMALL[@]}" --steps 2 --out "$W/gpt"
  expect_fail "--arch llama differs from checkpoint .*'s gpt" train --quiet --arch llama --resume "$W/gpt/ckpt-00000002" --steps 3 --out "$W/x"
  ;;
llama_eval)
  "$STRATA" train "${LLAMA[@]}" --steps 4 --eval-tokens 256 --out "$W/a"
  val=$(sed -nE 's/.*"val_loss": ([0-9.e-]+).*/\1/p' "$W/a/report.json")
  out=$("$STRATA" eval --checkpoint "$W/a/ckpt-00000004" --tokens 256 --batch 3 --json)
  grep -Eq '^\{"loss": [0-9.]+, "bits": [0-9.]+, "tokens": 256, "sequences": 8, "seq_len": 32, "split": "val", "precision": "fp32"\}$' <<<"$out" \
    || fail "unexpected eval output: $out"
  loss=$(echo "$out" | sed -E 's/.*"loss": ([0-9.]+).*/\1/')
  awk -v a="$loss" -v b="$val" 'BEGIN { d = a - b; exit !(d < 1e-6 && d > -1e-6) }' \
    || fail "eval loss $loss differs from train's validation loss $val"
  # --eval-only on the checkpoint: the same sequences in the same passes
  "$STRATA" train --resume "$W/a/ckpt-00000004" --eval-only --eval-tokens 256 --out "$W/a" 2> "$W/eo.txt"
  eo=$(sed -nE 's/.*validation loss ([0-9.]+) over.*/\1/p' "$W/eo.txt")
  awk -v a="$eo" -v b="$val" 'BEGIN { d = a - b; exit !(d < 1e-6 && d > -1e-6) }' \
    || fail "--eval-only: $(cat "$W/eo.txt") (want $val)"
  ;;
llama_config)
  # a Hugging Face LlamaConfig (TinyLlama's keys) at a small width: flags win over its shape
  cat >"$W/llama.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2,
 "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 5632,
 "max_position_embeddings": 2048, "model_type": "llama", "num_attention_heads": 32,
 "num_hidden_layers": 22, "num_key_value_heads": 4, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
 "rope_scaling": null, "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
 "use_cache": true, "vocab_size": 256}
JSON
  "$STRATA" train --config "$W/llama.json" --layers 2 --dim 64 --heads 4 --ffn 128 --ctx 16 --batch 2 --steps 1 \
    --eval-tokens 64 --quiet --out "$W/l"
  got=$(sed -n 's/.*"\(model_type\|num_hidden_layers\|hidden_size\|num_attention_heads\|num_key_value_heads\|intermediate_size\|max_position_embeddings\)": "*\([a-z0-9]*\)"*.*/\1=\2/p' \
        "$W"/l/ckpt-00000001/config.json | sort | paste -sd' ' -)
  [ "$got" = "hidden_size=64 intermediate_size=128 max_position_embeddings=16 model_type=llama num_attention_heads=4 num_hidden_layers=2 num_key_value_heads=4" ] \
    || fail "--config llama with flags: $got"
  bad() { # bad JSON PATTERN [FLAGS...]
    local js="$1" pat="$2"; shift 2
    printf '%s\n' "$js" >"$W/bad.json"
    set +e; out=$("$STRATA" train --config "$W/bad.json" --steps 1 "$@" --out "$W/b" 2>&1); code=$?; set -e
    [ "$code" -eq 2 ] || fail "config $js: exit $code, expected 2: $out"
    grep -q -- "$pat" <<<"$out" || fail "config $js: message lacks '$pat': $out"
  }
  L='"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4, "num_hidden_layers": 2, "max_position_embeddings": 16, "vocab_size": 256'
  bad "{$L, \"tie_word_embeddings\": true}" 'tie_word_embeddings true is not supported'
  bad "{$L, \"num_key_value_heads\": 3}" 'kv_heads'
  bad "{$L, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}" 'rope_scaling is not supported'
  bad '{"model_type": "llama", "hidden_size": 64}' 'missing or non-integer "vocab_size"'
  bad "{$L}" 'is a Llama model (model_type "llama") but --arch gpt was given' --arch gpt
  ;;
llama_infer)
  "$STRATA" train "${LLAMA[@]}" --steps 20 --lr 0.01 --warmup 2 --out "$W/a"
  CK="$W/a/ckpt-00000020"
  got=$("$STRATA" infer --checkpoint "$CK" --prompt "The " --max-tokens 12 --json | sed -E 's/.*"token_ids": \[([0-9, ]*)\].*/\1/; s/ //g')
  want=$("$3" --greedy "$CK" "The " 12)
  [ "$got" = "$want" ] || fail "greedy tokens $got, the plain loop's $want"
  s1=$("$STRATA" infer --checkpoint "$CK" --prompt "The " --max-tokens 12 --temperature 0.8 --top-k 40 --seed 3 --json)
  s2=$("$STRATA" infer --checkpoint "$CK" --prompt "The " --max-tokens 12 --temperature 0.8 --top-k 40 --seed 3 --json)
  [ "$(sed -E 's/.*"token_ids": (\[[^]]*\]).*/\1/' <<<"$s1")" = "$(sed -E 's/.*"token_ids": (\[[^]]*\]).*/\1/' <<<"$s2")" ] \
    || fail "the same seed sampled differently: $s1 / $s2"
  grep -q '"tokens": 12, .*"context_tokens": 16' <<<"$s1" || fail "unexpected infer --json: $s1"
  ;;
llama_badflags)
  expect_fail "--kv-heads applies to Llama models only; add --arch llama" train --kv-heads 2 --out "$W/x"
  expect_fail "--rope-theta applies to Llama models only" train --rope-theta 5e5 --out "$W/x"
  expect_fail "--arch must be gpt or llama, got 'mamba'" train --arch mamba --out "$W/x"
  expect_fail "--arch llama with --dp 2 needs mpirun -np 2" train "${LLAMA[@]}" --dp 2 --out "$W/x"
  expect_fail "--arch llama with --pp 2 --dp 1 needs mpirun -np 2 (the job's rank count is 1)" train "${LLAMA[@]}" --pp 2 --out "$W/x"
  expect_fail "--arch llama with --tp 2 --dp 1 needs mpirun -np 2 (the job's rank count is 1)" train "${LLAMA[@]}" --tp 2 --out "$W/x"
  expect_fail "--recompute is not supported with --arch llama" train "${LLAMA[@]}" --recompute full --out "$W/x"
  expect_fail "kv_heads" train "${LLAMA[@]}" --kv-heads 3 --out "$W/x"
  expect_fail "--rms-norm-eps must be" train "${LLAMA[@]}" --rms-norm-eps 0 --out "$W/x"
  "$STRATA" train "${LLAMA[@]}" --steps 1 --out "$W/l1" > /dev/null 2>&1 || fail "a one-step Llama run failed"
  expect_fail "--precision bf16 differs from checkpoint" train --resume "$W/l1/ckpt-00000001" --steps 2 --precision bf16 --out "$W/x"
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "train_cli $CASE: ok"
