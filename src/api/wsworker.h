/*
 * wsworker.h — the /v1/worker WebSocket connections (wsworker.c) as the application sees
 * them.
 */
#ifndef JOBQ_WSWORKER_H
#define JOBQ_WSWORKER_H

typedef struct jobq_app jobq_app;
typedef struct jobq_wsworkers jobq_wsworkers;

jobq_wsworkers *jobq_wsworkers_new(jobq_app *a);
/* Offers ready jobs to the connections that have credit (end of a loop turn). */
void jobq_wsworkers_serve(jobq_wsworkers *w);
/* Closes every connection (1001); their jobs keep their leases. */
void jobq_wsworkers_stop(jobq_wsworkers *w);
/* After every connection is closed. Takes NULL. */
void jobq_wsworkers_free(jobq_wsworkers *w);

#endif
