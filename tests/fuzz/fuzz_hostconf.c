/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz harness for the host configuration parser (stager/site/hostconf.h).
 * Checks what the callback is promised: well-formed keys, trimmed values,
 * increasing lines; and that a failure names a line of the text.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hostconf.h"
#include "quai/quai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

struct state {
	unsigned calls;
	unsigned last_line;
	unsigned fail_at; /* call that fails, 0: none */
};

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static int on_setting(const char *key, const char *value, unsigned line, void *arg)
{
	struct state *s = arg;
	size_t klen = strlen(key), vlen = strlen(value);

	CHECK(klen >= 1 && klen <= QHC_LINE_MAX);
	CHECK(strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789_") == klen);
	CHECK(vlen <= QHC_LINE_MAX);
	CHECK(!vlen || (!blank(value[0]) && !blank(value[vlen - 1])));
	CHECK(!memchr(value, '\n', vlen));
	CHECK(line > s->last_line);
	s->last_line = line;
	(void)quai_zone_check(value);
	if (++s->calls == s->fail_at)
		return -QUAI_EFORMAT;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct state s = {0};
	unsigned line = 0, lines = 1;
	char msg[128];
	int r, r2;

	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';

	r = qhc_parse(text, size, on_setting, &s, &line, msg, sizeof(msg));
	CHECK(r == 0 || r == -QUAI_EFORMAT || r == -ENOMEM);
	if (r == -QUAI_EFORMAT) {
		CHECK(s.calls == 0);
		CHECK(line <= lines && (line > 0 || size > QHC_FILE_MAX));
		CHECK(memchr(msg, '\0', sizeof(msg)) && msg[0]);
	}

	/* The same text without a callback gives the same verdict. */
	r2 = qhc_parse(text, size, NULL, NULL, NULL, NULL, 0);
	CHECK(r2 == r || r2 == -ENOMEM || r == -ENOMEM);

	/* A callback that fails part way stops the parse at its line. */
	if (r == 0 && s.calls > 0) {
		unsigned calls = s.calls;

		s = (struct state){.fail_at = size ? 1 + data[0] % calls : 1};
		r = qhc_parse(text, size, on_setting, &s, &line, msg, sizeof(msg));
		CHECK(r == -QUAI_EFORMAT || r == -ENOMEM);
		if (r == -QUAI_EFORMAT)
			CHECK(s.calls == s.fail_at && line == s.last_line);
	}
	return 0;
}
