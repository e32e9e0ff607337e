/* Layout: rank <-> (stage, replica) mapping, validation messages, parameter counts against the
 * published GPT-2 sizes, explicit and balanced stage -> layer assignment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"
#include "test_util.h"

static layout_model_t small_model(void) {
  layout_model_t m = {64, 16, 8, 2, 32}; /* V, T, L, H, C: tiny vocab so embed/head are cheap */
  return m;
}

static void test_mapping_is_stage_fastest(void) {
  layout_model_t m = small_model();
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &m, 6, 1, 3, 2, 2, 8, NULL, err, sizeof err), 0);
  /* rank = replica * P + stage */
  int expect_stage[6] = {0, 1, 2, 0, 1, 2}, expect_rep[6] = {0, 0, 0, 1, 1, 1};
  for (int r = 0; r < 6; r++) {
    CHECK_EQ_INT(layout_stage_of(&lay, r), expect_stage[r]);
    CHECK_EQ_INT(layout_replica_of(&lay, r), expect_rep[r]);
    CHECK_EQ_INT(layout_rank(&lay, 0, expect_stage[r], expect_rep[r]), r);
  }
  CHECK_EQ_INT(lay.micro_batch, 2); /* 8 / (2 x 2) */
}

static void test_world_mismatch_names_numbers(void) {
  layout_model_t m = small_model();
  layout_t lay;
  char err[256] = "";
  CHECK_EQ_INT(layout_init(&lay, &m, 5, 1, 2, 2, 1, 8, NULL, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "5 ranks") && strstr(err, "--pp 2 x --dp 2 = 4"));
}

static void test_more_stages_than_layers_refused(void) {
  layout_model_t m = small_model();
  layout_t lay;
  char err[256] = "";
  CHECK_EQ_INT(layout_init(&lay, &m, 9, 1, 9, 1, 1, 8, NULL, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "--pp 9") && strstr(err, "8 layers"));
}

static void test_batch_not_divisible_refused(void) {
  layout_model_t m = small_model();
  layout_t lay;
  char err[256] = "";
  CHECK_EQ_INT(layout_init(&lay, &m, 2, 1, 1, 2, 3, 8, NULL, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "--batch 8") && strstr(err, "= 6"));
}

static void test_bad_model_names_field(void) {
  layout_model_t m = small_model();
  m.heads = 3; /* 32 % 3 != 0 */
  char err[256] = "";
  CHECK_EQ_INT(layout_model_validate(&m, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "heads 3") != NULL);
}

static void test_explicit_stage_layers(void) {
  layout_model_t m = small_model();
  layout_t lay;
  char err[256] = "";
  CHECK_EQ_INT(layout_init(&lay, &m, 3, 1, 3, 1, 1, 4, "3,3,2", err, sizeof err), 0);
  CHECK_EQ_INT(lay.layer_begin[0], 0);
  CHECK_EQ_INT(lay.layer_begin[1], 3);
  CHECK_EQ_INT(lay.layer_begin[2], 6);
  CHECK_EQ_INT(lay.layer_begin[3], 8);
  int counts[8];
  CHECK_EQ_INT(layout_parse_stage_layers("3,3,1", 8, 3, counts, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "sum to 7") && strstr(err, "8 layers"));
  CHECK_EQ_INT(layout_parse_stage_layers("4,4", 8, 3, counts, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "--pp is 3") != NULL);
  CHECK_EQ_INT(layout_parse_stage_layers("4,0,4", 8, 3, counts, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "at least 1") != NULL);
  CHECK_EQ_INT(layout_parse_stage_layers("4,x,4", 8, 3, counts, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "comma-separated") != NULL);
  CHECK_EQ_INT(layout_parse_stage_layers("4,4,", 8, 3, counts, err, sizeof err), -1);
}

static void test_param_counts_match_published_gpt2_sizes(void) {
  /* Hugging Face num_parameters() of GPT2LMHeadModel (tied wte counted once). */
  const struct {
    const char *name;
    long long params;
  } ref[] = {{"gpt2", 124439808LL},
             {"gpt2-medium", 354823168LL},
             {"gpt2-large", 774030080LL},
             {"gpt2-xl", 1557611200LL}};
  for (int i = 0; i < 4; i++) {
    layout_model_t m;
    CHECK_EQ_INT(layout_model_preset(ref[i].name, &m), 0);
    CHECK_EQ_INT(layout_params_total(&m), ref[i].params);
  }
  layout_model_t m;
  CHECK_EQ_INT(layout_model_preset("nope", &m), -1);
}

static void test_stage_params_sum_to_model_plus_tied_copy(void) {
  layout_model_t m;
  layout_model_preset("gpt2", &m);
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &m, 4, 1, 4, 1, 4, 8, NULL, err, sizeof err), 0);
  long long sum = 0;
  for (int s = 0; s < 4; s++) sum += layout_stage_params(&lay, s);
  CHECK_EQ_INT(sum, 124439808LL + 50257LL * 768); /* + the last stage's wte copy */
  CHECK_EQ_INT(layout_init(&lay, &m, 1, 1, 1, 1, 1, 8, NULL, err, sizeof err), 0);
  CHECK_EQ_INT(layout_stage_params(&lay, 0), 124439808LL);
}

static void test_balance_uniform_layers_split_evenly(void) {
  layout_model_t m = small_model(); /* embed/head cost tiny next to a layer */
  int counts[8];
  layout_balance(&m, 4, counts);
  for (int s = 0; s < 4; s++) CHECK_EQ_INT(counts[s], 2);
  layout_balance(&m, 3, counts); /* 8 over 3: near-equal, earlier stages take the extra */
  CHECK_EQ_INT(counts[0], 3);
  CHECK_EQ_INT(counts[1], 3);
  CHECK_EQ_INT(counts[2], 2);
  layout_balance(&m, 8, counts);
  for (int s = 0; s < 8; s++) CHECK_EQ_INT(counts[s], 1);
}

static void test_balance_gives_head_stage_fewer_layers(void) {
  /* GPT-2 124M: the head (logits over 50257 tokens) costs about five layers, so with 4 stages
   * of 12 layers the last stage holds fewer layers, and no stage costs more than the even
   * 3,3,3,3 split's worst stage. */
  layout_model_t m;
  layout_model_preset("gpt2", &m);
  layout_t bal, even;
  char err[256];
  CHECK_EQ_INT(layout_init(&bal, &m, 4, 1, 4, 1, 4, 8, NULL, err, sizeof err), 0);
  CHECK_EQ_INT(layout_init(&even, &m, 4, 1, 4, 1, 4, 8, "3,3,3,3", err, sizeof err), 0);
  CHECK_TRUE(layout_stage_layers(&bal, 3) < 3);
  double worst_bal = 0, worst_even = 0;
  for (int s = 0; s < 4; s++) {
    double fb = layout_stage_train_flops(&bal, s, 1), fe = layout_stage_train_flops(&even, s, 1);
    if (fb > worst_bal) worst_bal = fb;
    if (fe > worst_even) worst_even = fe;
  }
  CHECK_TRUE(worst_bal < worst_even);
}

static void test_layer_flops_closed_form(void) {
  /* forward matmul flops of a layer = 2 * tokens * 12 C^2 (qkv, attn proj, fc, fc proj) */
  layout_model_t m = {64, 16, 8, 2, 32};
  layout_op_t ops[LAYOUT_MAX_OPS];
  int n = layout_layer_ops(&m, 3, 16, ops);
  double mm = 0;
  for (int i = 0; i < n; i++)
    if (!strcmp(ops[i].name, "qkv") || !strcmp(ops[i].name, "attproj") ||
        !strcmp(ops[i].name, "fc") || !strcmp(ops[i].name, "fcproj"))
      mm += ops[i].flops;
  CHECK_NEAR(mm, 2.0 * 3 * 16 * 12 * 32 * 32, 1e-6);
}

static void test_print_lists_every_stage(void) {
  layout_model_t m = small_model();
  layout_t lay;
  char err[256], *buf = NULL;
  size_t len = 0;
  CHECK_EQ_INT(layout_init(&lay, &m, 4, 1, 2, 2, 1, 4, NULL, err, sizeof err), 0);
  FILE *f = open_memstream(&buf, &len);
  layout_print(&lay, f);
  fclose(f);
  CHECK_TRUE(strstr(buf, "r3=(0,1,1)") && strstr(buf, "stage 0: layers 0-3") &&
             strstr(buf, "stage 1: layers 4-7"));
  free(buf);
}

int main(void) {
  test_mapping_is_stage_fastest();
  test_world_mismatch_names_numbers();
  test_more_stages_than_layers_refused();
  test_batch_not_divisible_refused();
  test_bad_model_names_field();
  test_explicit_stage_layers();
  test_param_counts_match_published_gpt2_sizes();
  test_stage_params_sum_to_model_plus_tied_copy();
  test_balance_uniform_layers_split_evenly();
  test_balance_gives_head_stage_fewer_layers();
  test_layer_flops_closed_form();
  test_print_lists_every_stage();
  return test_finish("sim_layout");
}
