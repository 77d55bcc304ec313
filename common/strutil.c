/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "strutil.h"

const char *qstr_printable(char *buf, size_t max, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len && s[i] && i < max; i++)
		buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	if (i < len && s[i]) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

int qstr_parse_digits(const char *s, const char **ret_end, uint64_t *ret)
{
	const char *p = s;
	uint64_t v = 0;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*ret_end = p;
	*ret = v;
	return 0;
}

int qstr_parse_size(const char *s, int blanks, uint64_t *ret)
{
	static const struct {
		const char *name;
		unsigned shift;
	} suffixes[] = {
	    {"", 0},	 {"b", 0},  {"k", 10},	 {"kib", 10}, {"m", 20},
	    {"mib", 20}, {"g", 30}, {"gib", 30}, {"t", 40},   {"tib", 40},
	};
	const char *p;
	uint64_t v;
	int r = qstr_parse_digits(s, &p, &v);

	if (r < 0)
		return r;
	if (blanks)
		p += strspn(p, " \t");
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		if (strcasecmp(p, suffixes[i].name) != 0)
			continue;
		if (v > (UINT64_MAX >> suffixes[i].shift))
			return -ERANGE;
		*ret = v << suffixes[i].shift;
		return 0;
	}
	return -EINVAL;
}
