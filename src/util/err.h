/*
 * err.h — jobq's error codes: 0 is success, every failure a negative JOBQ_E* value.
 * jobq_strerror() names each one. HTTP status mapping lives in src/api/ only.
 */
#ifndef JOBQ_ERR_H
#define JOBQ_ERR_H

enum {
    JOBQ_OK = 0,
    JOBQ_ENOMEM = -1,    /* out of memory */
    JOBQ_EINVAL = -2,    /* invalid argument */
    JOBQ_ENOTFOUND = -3, /* no such queue / job */
    JOBQ_EEXIST = -4,    /* id or name taken */
    JOBQ_ESTATE = -5,    /* not allowed in the current state */
    JOBQ_ELEASE = -6,    /* lease expired or superseded */
    JOBQ_EDRAINING = -7, /* queue refuses new jobs */
    JOBQ_EFULL = -8,     /* queue at max_size */
    JOBQ_ESTORE = -9,    /* store failure (disk full, I/O error) */
    JOBQ_ELOCKED = -10,  /* data directory in use by another server */
    JOBQ_ECORRUPT = -11, /* stored data could not be read back */
    JOBQ_EIO = -12,      /* operating-system I/O error */
};

/* Returns a static, human-readable name for code `err` (never NULL). */
const char *jobq_strerror(int err);

#endif
