/* infer_sampler: greedy picks the argmax; top-k 1 equals greedy; top-k and top-p never pick a
 * token outside the allowed set (checked against the set computed by hand from the closed-form
 * softmax); empirical frequencies at temperature 1 match softmax(logits) (20000 draws, 4-sigma
 * binomial bounds); the same seed gives the same sequence, another seed a different one; bad
 * parameters are refused with a message naming them. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sampler.h"
#include "test_util.h"

int main(void) {
  const float logits[6] = {1.0f, 3.0f, 2.0f, -1.0f, 2.9f, 0.0f};
  char err[256];
  sampler_t s;
  sampler_params_t greedy = {0, 0, 1.0, 1};
  sampler_init(&s, &greedy);
  CHECK_EQ_INT(sampler_next(&s, logits, 6), 1);
  sampler_free(&s);
  sampler_params_t k1 = {0.8, 1, 1.0, 3};
  sampler_init(&s, &k1);
  for (int i = 0; i < 100; i++) CHECK_EQ_INT(sampler_next(&s, logits, 6), 1);
  sampler_free(&s);
  /* top-k 3: {1, 4, 2} only */
  sampler_params_t k3 = {1.0, 3, 1.0, 4};
  sampler_init(&s, &k3);
  int bad = 0;
  for (int i = 0; i < 2000; i++) {
    int t = sampler_next(&s, logits, 6);
    bad += !(t == 1 || t == 4 || t == 2);
  }
  CHECK_EQ_INT(bad, 0);
  sampler_free(&s);
  /* softmax probs: e^3, e^2.9 are 0.4, 0.36 of the mass roughly; top_p 0.5 -> {1, 4} */
  double z = 0, p[6];
  for (int i = 0; i < 6; i++) z += exp(logits[i]);
  for (int i = 0; i < 6; i++) p[i] = exp(logits[i]) / z;
  CHECK_TRUE(p[1] < 0.5 && p[1] + p[4] >= 0.5); /* the nucleus is exactly {1, 4} */
  sampler_params_t tp = {1.0, 0, 0.5, 5};
  sampler_init(&s, &tp);
  bad = 0;
  for (int i = 0; i < 2000; i++) {
    int t = sampler_next(&s, logits, 6);
    bad += !(t == 1 || t == 4);
  }
  CHECK_EQ_INT(bad, 0);
  sampler_free(&s);
  /* frequencies at temperature 1 */
  sampler_params_t t1 = {1.0, 0, 1.0, 6};
  sampler_init(&s, &t1);
  int cnt[6] = {0};
  const int n = 20000;
  for (int i = 0; i < n; i++) cnt[sampler_next(&s, logits, 6)]++;
  for (int i = 0; i < 6; i++) {
    double sd = sqrt(n * p[i] * (1 - p[i]));
    CHECK_NEAR(cnt[i], n * p[i], 4 * sd + 1);
  }
  sampler_free(&s);
  /* reproducible by seed */
  int a[50], b[50], c[50];
  sampler_params_t s7 = {1.5, 0, 1.0, 7}, s8 = {1.5, 0, 1.0, 8};
  sampler_init(&s, &s7);
  for (int i = 0; i < 50; i++) a[i] = sampler_next(&s, logits, 6);
  sampler_free(&s);
  sampler_init(&s, &s7);
  for (int i = 0; i < 50; i++) b[i] = sampler_next(&s, logits, 6);
  sampler_free(&s);
  sampler_init(&s, &s8);
  for (int i = 0; i < 50; i++) c[i] = sampler_next(&s, logits, 6);
  sampler_free(&s);
  CHECK_TRUE(memcmp(a, b, sizeof a) == 0);
  CHECK_TRUE(memcmp(a, c, sizeof a) != 0);
  /* validation */
  sampler_params_t neg = {-1, 0, 1.0, 0}, p0 = {1, 0, 0.0, 0}, p2 = {1, 0, 1.5, 0}, kneg = {1, -2, 1, 0};
  CHECK_EQ_INT(sampler_validate(&neg, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "temperature") != NULL);
  CHECK_EQ_INT(sampler_validate(&p0, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "top_p") != NULL);
  CHECK_EQ_INT(sampler_validate(&p2, err, sizeof err), -1);
  CHECK_EQ_INT(sampler_validate(&kneg, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "top_k") != NULL);
  CHECK_EQ_INT(sampler_validate(&t1, err, sizeof err), 0);
  return test_finish("infer_sampler");
}
