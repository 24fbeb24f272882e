/* err.c — names of jobq's error codes. */
#include "util/err.h"

const char *jobq_strerror(int err)
{
    switch (err) {
    case JOBQ_OK:
        return "success";
    case JOBQ_ENOMEM:
        return "out of memory";
    case JOBQ_EINVAL:
        return "invalid argument";
    case JOBQ_ENOTFOUND:
        return "not found";
    case JOBQ_EEXIST:
        return "already exists";
    case JOBQ_ESTATE:
        return "not allowed in the current state";
    case JOBQ_ELEASE:
        return "lease expired or superseded";
    case JOBQ_EDRAINING:
        return "queue is draining";
    case JOBQ_EFULL:
        return "queue is full";
    case JOBQ_ESTORE:
        return "store failure";
    case JOBQ_ELOCKED:
        return "data directory is locked by another server";
    case JOBQ_ECORRUPT:
        return "stored data is corrupt";
    case JOBQ_EIO:
        return "I/O error";
    }
    return "unknown error";
}
