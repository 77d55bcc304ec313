/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz harness for quaid's configuration (stager/site/svcconf.h). Parses any
 * text, checks that what is accepted keeps every bound the header promises
 * and that a refusal says where, then prints what was accepted and parses
 * it back to the same configuration: what `quaid --check-config` writes
 * must read back the same. Leaks show under the sanitizers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostconf.h"
#include "quai/quai.h"
#include "svcconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static bool terminated(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_bounds(const struct qsvc_conf *c)
{
	CHECK(terminated(c->listen_node, sizeof(c->listen_node)) && c->listen_node[0]);
	CHECK(terminated(c->listen_service, sizeof(c->listen_service)));
	CHECK(atoi(c->listen_service) >= 0 && atoi(c->listen_service) <= 65535);
	CHECK(terminated(c->provider, sizeof(c->provider)));
	CHECK(quai_zone_check(c->zone) == 0 || !c->zone[0]);
	CHECK(c->nroots <= QSVC_ROOTS_MAX);
	for (unsigned i = 0; i < c->nroots; i++) {
		CHECK(c->roots[i][0] == '/');
		CHECK(!strstr(c->roots[i], "//"));
		CHECK(!strchr(c->roots[i], ':'));
		for (unsigned j = 0; j < i; j++)
			CHECK(strcmp(c->roots[i], c->roots[j]) != 0);
	}
	CHECK(!c->push_root || c->push_root[0] == '/');
	CHECK(!c->log_file || c->log_file[0] == '/');
	CHECK(c->max_clients >= 1 && c->max_clients <= 4096);
	CHECK(c->max_streams >= 1 && c->max_streams <= 1024);
	CHECK(c->workers <= 1024);
	CHECK(c->idle_timeout >= 1 && c->idle_timeout <= 86400);
	CHECK(c->client_memory >= (16u << 20) && c->pinned >= c->client_memory);
	CHECK(qsvc_log_level_name(c->log_level) != NULL);
}

static void check_same(const struct qsvc_conf *a, const struct qsvc_conf *b)
{
	CHECK(strcmp(a->listen_node, b->listen_node) == 0);
	CHECK(strcmp(a->listen_service, b->listen_service) == 0);
	CHECK(strcmp(a->provider, b->provider) == 0);
	CHECK(strcmp(a->zone, b->zone) == 0);
	CHECK(a->nroots == b->nroots);
	for (unsigned i = 0; i < a->nroots; i++)
		CHECK(strcmp(a->roots[i], b->roots[i]) == 0);
	CHECK(same_str(a->push_root, b->push_root));
	CHECK(a->max_clients == b->max_clients && a->max_streams == b->max_streams);
	CHECK(a->client_memory == b->client_memory && a->pinned == b->pinned);
	CHECK(a->workers == b->workers && a->idle_timeout == b->idle_timeout);
	CHECK(a->log_level == b->log_level);
	CHECK(same_str(a->log_file, b->log_file));
}

/* Whether every line of text fits the parser's limit: a setting written
 * "key=value" on a full line comes back as "key = value", two bytes more. */
static bool lines_fit(const char *text, size_t len)
{
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - text - pos) : len - pos;

		if (n > QHC_LINE_MAX)
			return false;
		pos += n + 1;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qsvc_conf c, back;
	char err[512], *out = NULL;
	size_t out_len = 0;
	FILE *f;
	int r;

	qsvc_conf_init(&c);
	memset(err, 'x', sizeof(err));
	r = qsvc_conf_parse((const char *)data, size, &c, err, sizeof(err));
	CHECK(r == 0 || r == -QUAI_EFORMAT || r == -ENOMEM);
	if (r == -QUAI_EFORMAT)
		CHECK(terminated(err, sizeof(err)) && err[0]);
	if (r < 0) {
		qsvc_conf_free(&c);
		return 0;
	}
	check_bounds(&c);

	f = open_memstream(&out, &out_len);
	if (!f) {
		qsvc_conf_free(&c);
		return 0;
	}
	qsvc_conf_print(&c, f);
	CHECK(fclose(f) == 0);
	qsvc_conf_init(&back);
	r = qsvc_conf_parse(out, out_len, &back, err, sizeof(err));
	if (r == 0)
		check_same(&c, &back);
	else
		CHECK(r == -ENOMEM || !lines_fit(out, out_len));
	qsvc_conf_free(&back);
	free(out);

	/* Freed twice: the second is a no-op. */
	qsvc_conf_free(&c);
	qsvc_conf_free(&c);
	return 0;
}
