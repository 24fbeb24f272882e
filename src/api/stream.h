/*
 * stream.h — the subscribers of /v1/events (stream.c) as the application sees them.
 */
#ifndef JOBQ_STREAM_H
#define JOBQ_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct jobq_app jobq_app;
typedef struct jobq_streams jobq_streams;

/* Registers as a publish sink of the app's bus. cap: bytes a subscriber may fall behind
 * by (0: 8 MiB). */
jobq_streams *jobq_streams_new(jobq_app *a, uv_loop_t *loop, size_t cap);
/* The store is loaded: `first_seq` is the first seq this process will publish; a resume
 * from before it gets a gap event. */
void jobq_streams_start(jobq_streams *st, uint64_t first_seq);
/* Subscribers now attached. */
size_t jobq_streams_count(const jobq_streams *st);
/* Ends every subscriber (SSE streams end, WebSockets close with 1001). */
void jobq_streams_stop(jobq_streams *st);
/* Closes its timer; freed once closed (uv_close). Takes NULL. */
void jobq_streams_free(jobq_streams *st);

#endif
