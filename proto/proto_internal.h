/* proto_internal.h -- private to proto/: conversions between the plain C config structs of
 * strata_proto.h and the generated protobuf-c messages, and the shared validation of a model /
 * training / layout configuration, used by every message that embeds them. */
#ifndef STRATA_PROTO_INTERNAL_H
#define STRATA_PROTO_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include "strata_proto.h"
#include "train_state.pb-c.h"

void proto_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Validates the configuration; `what` prefixes messages ("train state", "run report"). */
int proto_check_config(const strata_model_cfg_t *m, const strata_train_cfg_t *t,
                       const strata_layout_t *l, const char *what, char *err, size_t errlen);

/* C struct -> message. The messages point into the structs (strings, arrays): keep the structs
 * alive until the message is packed. */
void proto_model_to_msg(const strata_model_cfg_t *c, Strata__ModelConfig *msg);
void proto_train_to_msg(const strata_train_cfg_t *c, Strata__TrainConfig *msg);
void proto_layout_to_msg(const strata_layout_t *c, Strata__Layout *msg);

/* message -> C struct, bounding strings and arrays; -1 with a message on overflow. A NULL
 * message leaves the struct as it is. */
void proto_model_from_msg(const Strata__ModelConfig *msg, strata_model_cfg_t *c);
int proto_train_from_msg(const Strata__TrainConfig *msg, strata_train_cfg_t *c, const char *what,
                         char *err, size_t errlen);
int proto_layout_from_msg(const Strata__Layout *msg, strata_layout_t *c, const char *what,
                          char *err, size_t errlen);
/* Copies a string into a fixed buffer; -1 naming `field` if it does not fit. */
int proto_copy_str(char *dst, size_t cap, const char *src, const char *what, const char *field,
                   char *err, size_t errlen);

#endif /* STRATA_PROTO_INTERNAL_H */
