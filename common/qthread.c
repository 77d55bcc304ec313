/* SPDX-License-Identifier: Apache-2.0 */
#include <signal.h>

#include "qthread.h"

int qthread_create(pthread_t *thread, void *(*fn)(void *), void *arg)
{
	sigset_t stop, old;
	int r;

	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	sigaddset(&stop, SIGQUIT);
	/* The new thread inherits the creator's mask at creation. */
	pthread_sigmask(SIG_BLOCK, &stop, &old);
	r = pthread_create(thread, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}
