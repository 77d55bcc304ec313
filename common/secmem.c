/* SPDX-License-Identifier: Apache-2.0 */
/* Locked buffers for sensitive bytes (secmem.h). */
#include "secmem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

void *qsm_alloc(size_t len, int sensitive, int *err)
{
	*err = 0;
	if (!len)
		len = 1; /* a buffer for an empty frame still exists */
	if (!sensitive) {
		void *p = malloc(len);
		if (!p)
			*err = -ENOMEM;
		return p;
	}
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		*err = -ENOMEM;
		return NULL;
	}
	madvise(p, len, MADV_DONTDUMP);
	madvise(p, len, MADV_DONTFORK);
	/* The system call itself: AddressSanitizer's mlock() does nothing. */
	if (syscall(SYS_mlock, p, len) < 0) {
		*err = -EAGAIN; /* whatever mlock said: RLIMIT_MEMLOCK, mostly */
		munmap(p, len);
		return NULL;
	}
	return p;
}

void qsm_free(void *p, size_t len, int sensitive)
{
	if (!p)
		return;
	if (!sensitive) {
		free(p);
		return;
	}
	if (!len)
		len = 1; /* as qsm_alloc() */
	explicit_bzero(p, len);
	syscall(SYS_munlock, p, len);
	munmap(p, len);
}
