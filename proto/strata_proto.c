/* strata_proto.c -- encode/decode helpers for Strata messages. */
#include "strata_proto.h"
