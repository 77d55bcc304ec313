/* SPDX-License-Identifier: Apache-2.0 */
/* Error names and the small lookups of the public API that every room
 * shares: record kinds, classifications, zone names. */
#include <errno.h>
#include <string.h>

#include "quai/quai.h"
#include "quai_config.h"

static const char *const quai_messages[] = {
    [QUAI_ECORRUPT - QUAI_EBASE] =
	"stored data is corrupt (checksum mismatch or undecodable frame)",
    [QUAI_EFORMAT - QUAI_EBASE] = "not a valid quai dataset file (format violation)",
    [QUAI_EVERSION - QUAI_EBASE] = "unsupported format or protocol version",
    [QUAI_EPOLICY - QUAI_EBASE] = "refused by the site's data policy",
    [QUAI_EINPUT - QUAI_EBASE] = "input does not fit the chosen record kind",
    [QUAI_EEXISTS - QUAI_EBASE] = "destination already exists (quai never overwrites)",
    [QUAI_ECOMPRESS - QUAI_EBASE] = "compression library failure",
    [QUAI_EEND - QUAI_EBASE] = "end of sequence",
};

const char *quai_strerror(int err)
{
	if (err < 0)
		err = -err;
	if (err == 0)
		return "success";
	if (err > QUAI_EBASE && err < QUAI_ELAST)
		return quai_messages[err - QUAI_EBASE];
	if (err < QUAI_EBASE)
		return strerror(err); /* glibc: static strings for known codes */
	return "unknown quai error";
}

const char *quai_version(void)
{
	return QUAI_VERSION;
}

const char *quai_record_kind_name(int kind)
{
	switch (kind) {
	case QUAI_RECORDS_FILES:
		return "files";
	case QUAI_RECORDS_LINES:
		return "lines";
	case QUAI_RECORDS_FIXED:
		return "fixed";
	}
	return NULL;
}

const char *quai_class_name(int cls)
{
	switch (cls) {
	case QUAI_CLASS_PUBLIC:
		return "public";
	case QUAI_CLASS_INTERNAL:
		return "internal";
	case QUAI_CLASS_SENSITIVE:
		return "sensitive";
	}
	return NULL;
}

int quai_class_parse(const char *name)
{
	for (int c = QUAI_CLASS_PUBLIC; c <= QUAI_CLASS_SENSITIVE; c++)
		if (name && strcmp(name, quai_class_name(c)) == 0)
			return c;
	return -EINVAL;
}

int quai_zone_check(const char *zone)
{
	size_t n;

	if (!zone)
		return -EINVAL;
	n = strspn(zone, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");
	/* Not "." or "..": a zone may one day name a directory. */
	if (strcmp(zone, ".") == 0 || strcmp(zone, "..") == 0)
		return -EINVAL;
	return n >= 1 && n <= QUAI_ZONE_MAX && zone[n] == '\0' ? 0 : -EINVAL;
}
