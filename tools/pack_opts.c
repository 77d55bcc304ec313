/* SPDX-License-Identifier: Apache-2.0 */
#include "pack_opts.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli_util.h"

void pack_cli_init(struct pack_cli *p)
{
	memset(p, 0, sizeof(*p));
	p->o.size = sizeof(p->o);
	p->o.kind = QUAI_RECORDS_FILES;
	p->o.level = 3;
	p->o.frame_size = 2u << 20;
	p->o.shard_size = 1ull << 30;
	p->o.classification = QUAI_CLASS_INTERNAL;
}

/* --records: files, lines or fixed:N (N a SIZE). */
static int parse_records(const char *verb, const char *arg, struct quai_pack_opts *o)
{
	uint64_t n;

	if (strcmp(arg, "files") == 0) {
		o->kind = QUAI_RECORDS_FILES;
		return 0;
	}
	if (strcmp(arg, "lines") == 0) {
		o->kind = QUAI_RECORDS_LINES;
		return 0;
	}
	if (strncmp(arg, "fixed:", 6) == 0 && cli_parse_size(arg + 6, &n) == 0 && n > 0 &&
	    n <= QUAI_RECORD_SIZE_MAX) {
		o->kind = QUAI_RECORDS_FIXED;
		o->fixed_size = (uint32_t)n;
		return 0;
	}
	if (strncmp(arg, "fixed", 5) == 0)
		return cli_usage_error(
		    verb,
		    "invalid --records '%s': fixed:N needs a record size N from 1 "
		    "byte to 1GiB",
		    arg);
	return cli_usage_error(verb, "invalid --records '%s': expected files, lines or fixed:N",
			       arg);
}

static int parse_size_opt(const char *verb, const char *opt, const char *arg, uint64_t min,
			  uint64_t max, uint64_t *ret)
{
	char smin[32], smax[32];
	uint64_t v;

	if (cli_parse_size(arg, &v) < 0)
		return cli_usage_error(verb,
				       "invalid %s '%s': expected a byte count such as 1048576, "
				       "4M or 2MiB",
				       opt, arg);
	if (v < min || v > max) {
		cli_format_bytes(min, smin, sizeof(smin));
		cli_format_bytes(max, smax, sizeof(smax));
		if (max == UINT64_MAX)
			return cli_usage_error(verb, "invalid %s '%s': at least %s", opt, arg,
					       smin);
		return cli_usage_error(verb, "invalid %s '%s': from %s to %s", opt, arg, smin,
				       smax);
	}
	*ret = v;
	return 0;
}

int pack_cli_option(const char *verb, int c, const char *arg, struct pack_cli *p)
{
	char shown[256];
	uint64_t v;
	int r;

	switch (c) {
	case PACK_OPT_RECORDS:
		r = parse_records(verb, arg, &p->o);
		break;
	case PACK_OPT_LEVEL:
		r = cli_parse_int(arg, &p->o.level) < 0
			? cli_usage_error(verb, "invalid --level '%s': expected an integer", arg)
			: 0;
		break;
	case PACK_OPT_FRAME_SIZE:
		r = parse_size_opt(verb, "--frame-size", arg, QUAI_FRAME_SIZE_MIN,
				   QUAI_FRAME_SIZE_MAX, &v);
		if (r == 0)
			p->o.frame_size = (uint32_t)v;
		break;
	case PACK_OPT_SHARD_SIZE:
		r = parse_size_opt(verb, "--shard-size", arg, QUAI_SHARD_SIZE_MIN, UINT64_MAX,
				   &p->o.shard_size);
		break;
	case PACK_OPT_THREADS:
		if (cli_parse_u64(arg, &v) < 0 || v > 4096)
			return cli_usage_error(
			    verb, "invalid --threads '%s': expected 0 (auto) to 4096", arg);
		p->o.threads = (unsigned)v;
		r = 0;
		break;
	case PACK_OPT_CLASS:
		r = quai_class_parse(arg);
		if (r < 0)
			return cli_usage_error(
			    verb, "invalid --class '%s': expected public, internal or sensitive",
			    arg);
		p->o.classification = r;
		r = 0;
		break;
	case PACK_OPT_ZONE:
		if (quai_zone_check(arg) < 0)
			return cli_usage_error(
			    verb, "invalid --zone '%s': 1 to %d characters of A-Z a-z 0-9 . _ -",
			    cli_printable(arg, shown, sizeof(shown)), QUAI_ZONE_MAX);
		snprintf(p->zone, sizeof(p->zone), "%s", arg);
		p->o.zone = p->zone;
		r = 0;
		break;
	default:
		return 1;
	}
	if (r == 0)
		p->given = true;
	return r;
}

int pack_cli_finish(const char *verb, struct pack_cli *p)
{
	char err[256] = "";
	int r;

	if (p->o.zone)
		return 0;
	r = quai_host_zone(p->zone, sizeof(p->zone), err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "quai %s: cannot read the host's residency zone: %s\n", verb,
			err[0] ? err : quai_strerror(r));
		return CLI_EXIT_FAILURE; /* a bad host file is not bad data */
	}
	p->o.zone = p->zone;
	return 0;
}
