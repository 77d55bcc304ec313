/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Threads the library starts for its own work (pack and verify workers,
 * the engine's workers and readers) take none of the signals a user sends
 * to stop a program (SIGINT, SIGTERM, SIGHUP, SIGQUIT): those reach the
 * program's own threads, where a blocking open() or read() of a FIFO, a
 * pipe or a terminal returns EINTR and the work notices it. A signal the
 * kernel gave a worker instead was lost (issue 22 #11).
 */
#ifndef QUAI_COMMON_QTHREAD_H
#define QUAI_COMMON_QTHREAD_H

#include <pthread.h>

/* pthread_create() with those signals blocked in the new thread (the
 * caller's mask is left as it was). Returns 0 or a positive errno, as
 * pthread_create() does. */
int qthread_create(pthread_t *thread, void *(*fn)(void *), void *arg);

#endif
