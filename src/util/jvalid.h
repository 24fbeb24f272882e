/*
 * jvalid.h — checking that text is one JSON value, without building anything.
 */
#ifndef JOBQ_JVALID_H
#define JOBQ_JVALID_H

#include <stddef.h>

/* 1 when s[0..len) is exactly one JSON value (whitespace around it allowed) nested at most
 * max_depth arrays/objects deep, else 0. */
int jobq_json_valid(const char *s, size_t len, int max_depth);

#endif
