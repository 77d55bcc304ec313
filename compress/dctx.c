/* SPDX-License-Identifier: Apache-2.0 */
/* Locked decompression contexts (dctx.h). */
/* ZSTD_initStaticDCtx and ZSTD_estimateDCtxSize: libzstd's "static"
 * section, exported by the shared library and unchanged since 1.3. */
#define ZSTD_STATIC_LINKING_ONLY
#include "dctx.h"

#include <errno.h>

#include "secmem.h"

ZSTD_DCtx *qdc_new(int sensitive, int *err)
{
	*err = 0;
	if (!sensitive) {
		ZSTD_DCtx *d = ZSTD_createDCtx();
		if (!d)
			*err = -ENOMEM;
		return d;
	}
	/* The context lives in its workspace, at its start. */
	size_t len = ZSTD_estimateDCtxSize();
	void *ws = qsm_alloc(len, 1, err);
	if (!ws)
		return NULL;
	ZSTD_DCtx *d = ZSTD_initStaticDCtx(ws, len);
	if (!d) {
		qsm_free(ws, len, 1);
		*err = -ENOMEM;
	}
	return d;
}

void qdc_free(ZSTD_DCtx *d, int sensitive)
{
	if (!d)
		return;
	if (!sensitive)
		ZSTD_freeDCtx(d);
	else
		qsm_free(d, ZSTD_estimateDCtxSize(), 1);
}
