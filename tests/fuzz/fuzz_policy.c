/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz harness for quaid's data policy (stager/site/policy.h). Builds a policy
 * from the input twice: as configuration lines ("rule_NAME = VALUE",
 * "zone_hosts = ...", "unauthenticated = ..."), and whole, as one rule's
 * value and as zone_hosts. Each policy then decides a few fixed requests
 * for a few fixed subjects, and is written back with qpol_format(), which
 * must read back to the same text. A refusal must say why; a decision
 * must name what decided. Leaks show under the sanitizers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "quai/quai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

/* Lines longer than this are cut: user and group lookups are slow enough
 * without megabyte names. */
#define LINE_MAX_FUZZ 4096

static bool terminated(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

static void check_err(int r, const char *err, size_t cap)
{
	CHECK(r == 0 || r == -QUAI_EFORMAT || r == -ENOMEM);
	if (r == -QUAI_EFORMAT)
		CHECK(terminated(err, cap) && err[0]);
}

static void set_subject(struct qpol_subject *s, int kind, const uint32_t *gids)
{
	static const char *const addrs[] = {"10.1.0.7", "::ffff:10.1.0.7", "fd00:1::5", "::1"};

	memset(s, 0, sizeof(*s));
	s->authenticated = kind != 0;
	s->uid = kind == 1 ? 0 : kind == 2 ? 65534 : 1001;
	s->gids = gids;
	s->ngids = kind ? 2 : 0;
	s->user = kind == 3 ? NULL : "fuzz";
	if (kind < 4) {
		const char *a = addrs[kind];

		s->has_addr = 1;
		if (strchr(a, ':')) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&s->addr;

			in6->sin6_family = AF_INET6;
			CHECK(inet_pton(AF_INET6, a, &in6->sin6_addr) == 1);
		} else {
			struct sockaddr_in *in = (struct sockaddr_in *)&s->addr;

			in->sin_family = AF_INET;
			CHECK(inet_pton(AF_INET, a, &in->sin_addr) == 1);
		}
	}
}

static void decide_all(const struct qpol *p)
{
	static const uint32_t gids[] = {65534, 1};
	static const struct qpol_request reqs[] = {
	    {QPOL_LIST, "", 0, NULL},
	    {QPOL_STREAM, "era5", QUAI_CLASS_SENSITIVE, "fr-1"},
	    {QPOL_PULL, "era5-daily", QUAI_CLASS_INTERNAL, "de-1"},
	    {QPOL_PUSH, "imagenet", QUAI_CLASS_PUBLIC, "fr-1"},
	    {QPOL_PULL, "[x]", 0, NULL},
	    {QPOL_LIST, "cmip6", QUAI_CLASS_SENSITIVE, "fr-1"},
	    {0, "bad", QUAI_CLASS_INTERNAL, "fr-1"},
	};

	for (int kind = 0; kind < 5; kind++) {
		struct qpol_subject s;

		set_subject(&s, kind, gids);
		for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
			struct qpol_decision d;
			int r = qpol_decide(p, &s, &reqs[i], &d);

			CHECK(r == d.allow && (r == 0 || r == 1));
			CHECK(terminated(d.rule, sizeof(d.rule)) && d.rule[0]);
			CHECK(terminated(d.why, sizeof(d.why)));
			CHECK(d.allow ? !d.why[0] : d.why[0] != '\0');
			/* The fixed checks are never loosened. */
			if (!s.authenticated)
				CHECK(!d.allow || strcmp(d.rule, "auth:public") == 0);
			if (reqs[i].op == QPOL_STREAM)
				CHECK(!d.allow || strcmp(d.rule, "auth:public") != 0);
			if (reqs[i].classification == QUAI_CLASS_SENSITIVE &&
			    strcmp(reqs[i].zone, qpol_zone(p)) != 0)
				CHECK(!d.allow);
		}
	}
}

static char *format(const struct qpol *p)
{
	size_t n = qpol_format(p, NULL, 0);
	char *text = malloc(n + 1), small[8];

	if (!text)
		return NULL;
	CHECK(qpol_format(p, text, n + 1) == n && strlen(text) == n);
	CHECK(qpol_format(p, small, sizeof(small)) == n && terminated(small, sizeof(small)));
	return text;
}

/* Feeds "key = value" lines of text to p; returns how many were taken. */
static unsigned feed(struct qpol *p, char *text)
{
	char err[512], *save = NULL;
	unsigned n = 0;

	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '='), *key = line, *value, *end;
		int r;

		if (!eq || line[0] == '#')
			continue;
		*eq = '\0';
		value = eq + 1;
		value += strspn(value, " \t");
		for (end = eq; end > key && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		memset(err, 'x', sizeof(err));
		if (strncmp(key, "rule_", 5) == 0)
			r = qpol_add_rule(p, key + 5, value, err, sizeof(err));
		else if (strcmp(key, "zone_hosts") == 0)
			r = qpol_set_zone_hosts(p, value, err, sizeof(err));
		else if (strcmp(key, "unauthenticated") == 0)
			r = qpol_set_unauthenticated(p, value, err, sizeof(err));
		else
			continue;
		check_err(r, err, sizeof(err));
		n += r == 0;
	}
	return n;
}

/* What qpol_format wrote builds the same policy again. */
static void round_trip(const struct qpol *p, const char *zone)
{
	struct qpol *q;
	char *a = format(p), *b, *copy;

	if (!a)
		return;
	q = qpol_new(zone);
	copy = strdup(a);
	if (q && copy) {
		feed(q, copy);
		CHECK(qpol_nrules(q) == qpol_nrules(p));
		CHECK(qpol_unauthenticated(q) == qpol_unauthenticated(p));
		b = format(q);
		if (b)
			CHECK(strcmp(a, b) == 0);
		free(b);
	}
	free(copy);
	qpol_free(q);
	free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, err[512];
	struct qpol *p;
	int r;

	if (size > 64 * LINE_MAX_FUZZ)
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0'; /* a NUL inside ends the text early */

	/* Whole: one rule's value, and zone_hosts. */
	p = qpol_new("fr-1");
	if (p) {
		if (strlen(text) <= LINE_MAX_FUZZ) {
			memset(err, 'x', sizeof(err));
			r = qpol_add_rule(p, "whole", text, err, sizeof(err));
			check_err(r, err, sizeof(err));
			CHECK(qpol_nrules(p) == (r == 0));
			memset(err, 'x', sizeof(err));
			check_err(qpol_set_zone_hosts(p, text, err, sizeof(err)), err, sizeof(err));
		}
		decide_all(p);
		round_trip(p, "fr-1");
		qpol_free(p);
	}

	/* As lines, and with the zone set afterwards as quaid does. */
	p = qpol_new(NULL);
	if (p) {
		feed(p, text);
		qpol_set_zone(p, "fr-1");
		decide_all(p);
		round_trip(p, "fr-1");
		qpol_free(p);
	}
	free(text);
	return 0;
}
