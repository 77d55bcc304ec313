/* SPDX-License-Identifier: Apache-2.0 */
/* quaid's configuration (stager/site/svcconf.h): every key, good and bad, the
 * defaults, the checks on this host and the printed configuration. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "quai/quai.h"
#include "svcconf.h"
#include "testutil.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define TiB (UINT64_C(1) << 40)

static char dir[512]; /* short: messages quote it whole */

/* Every test runs in its own process: the environment set here is its own.
 * The host's zone is "none" (no host file), whatever this machine has. */
static void setup(void)
{
	char path[PATH_MAX + 64];

	tu_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/no-host.conf", dir);
	cr_assert_eq(setenv("QUAI_CONF", path, 1), 0);
	cr_assert_eq(unsetenv("FI_PROVIDER"), 0);
}

static void teardown(void)
{
	tu_rmtree(dir);
}

TestSuite(svcconf, .init = setup, .fini = teardown);

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static struct qsvc_conf parse_ok(const char *text)
{
	struct qsvc_conf c;
	char err[512] = "untouched";
	int r;

	qsvc_conf_init(&c);
	r = qsvc_conf_parse(text, strlen(text), &c, err, sizeof(err));
	cr_assert_eq(r, 0, "<%s>: %d: %s", text, r, err);
	cr_expect_str_eq(err, "untouched", "err written on success");
	return c;
}

/* The parse fails with exactly this message. */
static void parse_bad(const char *text, const char *want)
{
	struct qsvc_conf c;
	char err[512] = "";
	int r;

	qsvc_conf_init(&c);
	r = qsvc_conf_parse(text, strlen(text), &c, err, sizeof(err));
	cr_expect_eq(r, -QUAI_EFORMAT, "<%s> parsed: %d", text, r);
	cr_expect_str_eq(err, want, "<%s>", text);
	qsvc_conf_free(&c);
}

/* The parse of "key = value" fails with a message that starts "1: key: "
 * and holds `part`. */
static void value_bad(const char *key, const char *value, const char *part)
{
	struct qsvc_conf c;
	char text[8192], err[512] = "", prefix[128];
	int r;

	snprintf(text, sizeof(text), "%s = %s\n", key, value);
	snprintf(prefix, sizeof(prefix), "1: %s: ", key);
	qsvc_conf_init(&c);
	r = qsvc_conf_parse(text, strlen(text), &c, err, sizeof(err));
	cr_expect_eq(r, -QUAI_EFORMAT, "%s = <%s> parsed: %d", key, value, r);
	cr_expect(strncmp(err, prefix, strlen(prefix)) == 0, "%s = <%s>: '%s'", key, value, err);
	cr_expect(strstr(err, part) != NULL, "%s = <%s>: '%s' lacks '%s'", key, value, err, part);
	qsvc_conf_free(&c);
}

static struct qsvc_conf value_ok(const char *key, const char *value)
{
	char text[8192];

	snprintf(text, sizeof(text), "%s = %s\n", key, value);
	return parse_ok(text);
}

static void path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static void make_dir(const char *name)
{
	char p[PATH_MAX + 64];

	path_in(p, sizeof(p), name);
	cr_assert_eq(mkdir(p, 0755), 0, "mkdir %s: %s", p, strerror(errno));
}

static void make_file(const char *name, const char *text)
{
	char p[PATH_MAX + 64];

	path_in(p, sizeof(p), name);
	tu_write(p, text, strlen(text));
}

/* What qsvc_conf_check() writes, and its result. */
static int check(const struct qsvc_conf *c, char **ret_out)
{
	size_t len = 0;
	FILE *f = open_memstream(ret_out, &len);
	int r;

	cr_assert_not_null(f);
	r = qsvc_conf_check(c, f);
	cr_assert_eq(fclose(f), 0);
	return r;
}

static char *print(const struct qsvc_conf *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	cr_assert_not_null(f);
	qsvc_conf_print(c, f);
	cr_assert_eq(fclose(f), 0);
	return text;
}

static unsigned count_lines(const char *s)
{
	unsigned n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Skips when this process could not lock `bytes`: the checks would rightly
 * complain, and the test is about something else. */
static void need_memlock(uint64_t bytes)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	struct rlimit rl;

	cr_assert_eq(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= bytes)
		return;
	if (syscall(SYS_capget, &hdr, data) == 0 &&
	    (data[CAP_IPC_LOCK / 32].effective & (1u << (CAP_IPC_LOCK % 32))))
		return;
	cr_skip_test("RLIMIT_MEMLOCK is below %llu bytes and CAP_IPC_LOCK is missing",
		     (unsigned long long)bytes);
}

/* Root ignores permissions (CAP_DAC_OVERRIDE): drop that from this test's
 * process, so that a read-only directory is read-only to it. Returns 0 when
 * `path` is now not writable. */
static int lose_dac_override(const char *path)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	const int caps[] = {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER};

	if (syscall(SYS_capget, &hdr, data) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		data[caps[i] / 32].effective &= ~(1u << (caps[i] % 32));
		data[caps[i] / 32].permitted &= ~(1u << (caps[i] % 32));
	}
	if (syscall(SYS_capset, &hdr, data) < 0)
		return -1;
	return access(path, W_OK) < 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------
 * Defaults
 * ------------------------------------------------------------------------ */

static void expect_defaults(const struct qsvc_conf *c)
{
	cr_expect_str_eq(c->listen_node, "0.0.0.0");
	cr_expect_str_eq(c->listen_service, "7470");
	cr_expect_str_eq(c->provider, "");
	cr_expect_str_eq(c->zone, "none");
	cr_expect_eq(c->nroots, 0);
	cr_expect_null(c->push_root);
	cr_expect_eq(c->max_clients, 64);
	cr_expect_eq(c->max_streams, 8);
	cr_expect_eq(c->client_memory, 256 * MiB);
	cr_expect_eq(c->pinned, 1 * GiB);
	cr_expect_eq(c->workers, 0);
	cr_expect_eq(c->idle_timeout, 60);
	cr_expect_eq(c->handshake_timeout, 10);
	cr_expect_eq(c->host_conn_max, 256);
	cr_expect_eq(c->log_level, QSVC_LOG_INFO);
	cr_expect_null(c->log_file);
	cr_assert_not_null(c->policy);
	cr_expect_eq(qpol_nrules(c->policy), 0);
	cr_expect_eq(qpol_unauthenticated(c->policy), 0);
	cr_expect_str_eq(qpol_zone(c->policy), "none");
	cr_expect_null(c->audit_log);
	cr_expect_str_eq(c->munge_socket, "");
}

Test(svcconf, init_gives_the_defaults)
{
	struct qsvc_conf c;

	qsvc_conf_init(&c);
	expect_defaults(&c);
	qsvc_conf_free(&c);
	qsvc_conf_free(&c); /* twice: nothing left to free */
}

Test(svcconf, empty_and_comment_only_texts_keep_the_defaults)
{
	const char *texts[] = {"", "\n\n", "# quaid\n   # indented comment\n\t\n", "\r\n"};

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct qsvc_conf c = parse_ok(texts[i]);

		expect_defaults(&c);
		qsvc_conf_free(&c);
	}
}

Test(svcconf, the_zone_defaults_to_the_hosts)
{
	char path[PATH_MAX + 64];
	struct qsvc_conf c;

	make_file("host.conf", "zone = eu-west.1\n");
	path_in(path, sizeof(path), "host.conf");
	cr_assert_eq(setenv("QUAI_CONF", path, 1), 0);
	qsvc_conf_init(&c);
	cr_expect_str_eq(c.zone, "eu-west.1");
	qsvc_conf_free(&c);
}

Test(svcconf, a_malformed_host_file_leaves_the_zone_to_check)
{
	char path[PATH_MAX + 64], *out = NULL;
	struct qsvc_conf c;

	make_dir("root");
	make_file("host.conf", "zone = not a zone\n");
	path_in(path, sizeof(path), "host.conf");
	cr_assert_eq(setenv("QUAI_CONF", path, 1), 0);
	qsvc_conf_init(&c);
	cr_expect_str_eq(c.zone, "");
	cr_expect_eq(check(&c, &out), -QUAI_EFORMAT);
	cr_expect(strstr(out, "zone: not set, and the host's default zone cannot be read: ") == out,
		  "%s", out);
	cr_expect(strstr(out, "host.conf:1:") != NULL, "%s", out);
	free(out);
	/* A zone in quaid's own file needs no host file. */
	qsvc_conf_free(&c);
	c = value_ok("zone", "eu");
	cr_expect_str_eq(c.zone, "eu");
	qsvc_conf_free(&c);
}

/* ------------------------------------------------------------------------
 * Every key
 * ------------------------------------------------------------------------ */

Test(svcconf, every_key)
{
	struct qsvc_conf c = parse_ok("# quaid on io-node 3\n"
				      "listen = 10.1.2.3:7000\n"
				      "provider = verbs;ofi_rxm\n"
				      "zone = eu-west\n"
				      "roots = /data/a:/data/b\n"
				      "push_root = /data/incoming\n"
				      "max_clients = 128\n"
				      "max_streams = 4\n"
				      "client_memory = 512M\n"
				      "pinned = 8G\n"
				      "workers = 12\n"
				      "idle_timeout = 300\n"
				      "log_level = debug\n"
				      "log_file = /var/log/quai/quaid.log\n");

	cr_expect_str_eq(c.listen_node, "10.1.2.3");
	cr_expect_str_eq(c.listen_service, "7000");
	cr_expect_str_eq(c.provider, "verbs;ofi_rxm");
	cr_expect_str_eq(c.zone, "eu-west");
	cr_assert_eq(c.nroots, 2);
	cr_expect_str_eq(c.roots[0], "/data/a");
	cr_expect_str_eq(c.roots[1], "/data/b");
	cr_expect_str_eq(c.push_root, "/data/incoming");
	cr_expect_eq(c.max_clients, 128);
	cr_expect_eq(c.max_streams, 4);
	cr_expect_eq(c.client_memory, 512 * MiB);
	cr_expect_eq(c.pinned, 8 * GiB);
	cr_expect_eq(c.workers, 12);
	cr_expect_eq(c.idle_timeout, 300);
	cr_expect_eq(c.log_level, QSVC_LOG_DEBUG);
	cr_expect_str_eq(c.log_file, "/var/log/quai/quaid.log");
	qsvc_conf_free(&c);
}

Test(svcconf, listen_forms)
{
	static const struct {
		const char *value, *node, *service;
	} cases[] = {
	    {"127.0.0.1:7470", "127.0.0.1", "7470"},
	    {"127.0.0.1", "127.0.0.1", "7470"},
	    {"0.0.0.0:0", "0.0.0.0", "0"}, /* 0: an ephemeral port */
	    {"io-node3.example.org:65535", "io-node3.example.org", "65535"},
	    {"localhost", "localhost", "7470"},
	    {"node_7:00080", "node_7", "80"},
	    {"[::1]:7470", "::1", "7470"},
	    {"[::1]", "::1", "7470"},
	    {"[::]:0", "::", "0"},
	    {"[fe80::1%eth0]:9000", "fe80::1%eth0", "9000"},
	    {"[2001:db8::42]:1", "2001:db8::42", "1"},
	    {"[::ffff:10.0.0.1]:2", "::ffff:10.0.0.1", "2"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct qsvc_conf c = value_ok("listen", cases[i].value);

		cr_expect_str_eq(c.listen_node, cases[i].node, "%s", cases[i].value);
		cr_expect_str_eq(c.listen_service, cases[i].service, "%s", cases[i].value);
		qsvc_conf_free(&c);
	}
}

Test(svcconf, listen_rejects)
{
	static const struct {
		const char *value, *part;
	} cases[] = {
	    {"127.0.0.1:", "no port after ':'"},
	    {"127.0.0.1:65536", "the port must be a number from 0 to 65535"},
	    {"127.0.0.1:99999999999999999999999", "the port must be a number"},
	    {"127.0.0.1:-1", "the port must be"},
	    {"127.0.0.1:+1", "the port must be"},
	    {"127.0.0.1:7x", "the port must be"},
	    {"127.0.0.1: 7470", "the port must be"},
	    {":7470", "no address before the port"},
	    {"::1", "an IPv6 address goes in brackets"},
	    {"::1:7470", "an IPv6 address goes in brackets"},
	    {"fe80::1", "goes in brackets"},
	    {"[::1", "no ']' after the IPv6 address"},
	    {"[::1]7470", "expected ':PORT' after ']'"},
	    {"[::1]:", "no port after ':'"},
	    {"[]:1", "not an IPv6 address"},
	    {"[zz::1]:1", "not an IPv6 address"},
	    {"[127.0.0.1]:1", "not an IPv6 address"},
	    {"[fe80::1%]:1", "not an IPv6 address"},
	    {"[fe80::1%e/0]:1", "not an IPv6 address"},
	    {"999.1.1.1", "not a host name or address"},
	    {"10.1", "not a host name or address"},
	    {"1.2.3.4.5", "not a host name or address"},
	    {"bad host", "not a host name or address"},
	    {"host/x", "not a host name or address"},
	    {"-host", "not a host name or address"},
	    {".host", "not a host name or address"},
	};
	char long_name[300];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		value_bad("listen", cases[i].value, cases[i].part);
	memset(long_name, 'a', 254);
	long_name[254] = '\0';
	value_bad("listen", long_name, "longer than 253 bytes");
	long_name[253] = '\0';
	qsvc_conf_free((struct qsvc_conf[]){value_ok("listen", long_name)});
}

Test(svcconf, provider)
{
	const char *good[] = {"tcp;ofi_rxm", "verbs;ofi_rxm", "cxi",	"shm",
			      "udp",	     "psm3",	      "sockets"};
	const char *bad[] = {"tcp ofi_rxm", "tcp,verbs", "x/y", "^tcp",
			     "a123456789012345678901234567890123456789012345678901234567890123"};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct qsvc_conf c = value_ok("provider", good[i]);

		cr_expect_str_eq(c.provider, good[i]);
		qsvc_conf_free(&c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		value_bad("provider", bad[i], "is not a libfabric provider name");
}

Test(svcconf, the_provider_in_effect)
{
	struct qsvc_conf c;

	qsvc_conf_init(&c);
	cr_expect_str_eq(qsvc_conf_provider(&c), QSVC_DEFAULT_PROVIDER);
	cr_assert_eq(setenv("FI_PROVIDER", "", 1), 0);
	cr_expect_str_eq(qsvc_conf_provider(&c), "tcp;ofi_rxm");
	cr_assert_eq(setenv("FI_PROVIDER", "shm", 1), 0);
	cr_expect_str_eq(qsvc_conf_provider(&c), "shm");
	qsvc_conf_free(&c);
	c = value_ok("provider", "cxi");
	cr_expect_str_eq(qsvc_conf_provider(&c), "cxi", "the file wins over the environment");
	qsvc_conf_free(&c);
}

Test(svcconf, zone)
{
	const char *good[] = {"eu-west", "a", "Zone_1.b",
			      "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij123"};
	const char *bad[] = {
	    ".",       "..", "eu west",
	    "eu/west", "é",  "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij1234"};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct qsvc_conf c = value_ok("zone", good[i]);

		cr_expect_str_eq(c.zone, good[i]);
		qsvc_conf_free(&c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		value_bad("zone", bad[i], "is not a zone label");
}

Test(svcconf, roots_are_normalised)
{
	struct qsvc_conf c = value_ok("roots", "/data/a/://data//b///:/:/x y/z");

	cr_assert_eq(c.nroots, 4);
	cr_expect_str_eq(c.roots[0], "/data/a");
	cr_expect_str_eq(c.roots[1], "/data/b");
	cr_expect_str_eq(c.roots[2], "/");
	cr_expect_str_eq(c.roots[3], "/x y/z");
	qsvc_conf_free(&c);
}

Test(svcconf, roots_rejects)
{
	static const struct {
		const char *value, *part;
	} cases[] = {
	    {"/a::/b", "an empty directory in the list"},
	    {":/a", "an empty directory in the list"},
	    {"/a:", "an empty directory in the list"},
	    {":", "an empty directory in the list"},
	    {"data", "'data' is not an absolute path"},
	    {"/a:rel/b", "'rel/b' is not an absolute path"},
	    {"~/data", "is not an absolute path"},
	    {"/a:/b:/a", "'/a' is listed twice"},
	    {"/a:/a/", "'/a' is listed twice"},
	    {"/a//b:/a/b", "'/a/b' is listed twice"},
	    {"/a/../b", "'.' and '..' components are not allowed"},
	    {"/a/./b", "'.' and '..' components are not allowed"},
	    {"/a/..", "'.' and '..' components are not allowed"},
	    /* Found by the fuzzer: "/dat= " would print back as "/dat=". */
	    {"/data:/dat= /", "'/dat= /': a name that ends with a blank is not supported here"},
	    {"/x\t//:/y", "'/x?//': a name that ends with a blank"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		value_bad("roots", cases[i].value, cases[i].part);
	/* "..." is a name like any other. */
	qsvc_conf_free((struct qsvc_conf[]){value_ok("roots", "/a/.../b:/.x")});
}

Test(svcconf, at_most_QSVC_ROOTS_MAX_roots)
{
	char list[QSVC_ROOTS_MAX * 8 + 16];
	size_t n = 0;
	struct qsvc_conf c;

	for (int i = 0; i < QSVC_ROOTS_MAX; i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s/r%d", i ? ":" : "", i);
	c = value_ok("roots", list);
	cr_expect_eq(c.nroots, QSVC_ROOTS_MAX);
	cr_expect_str_eq(c.roots[QSVC_ROOTS_MAX - 1], "/r63");
	qsvc_conf_free(&c);
	snprintf(list + n, sizeof(list) - n, ":/one-more");
	value_bad("roots", list, "more than 64 directories");
}

Test(svcconf, push_root_and_log_file)
{
	struct qsvc_conf c = parse_ok("push_root = /data/in//\nlog_file = /var/log//quaid.log\n");

	cr_expect_str_eq(c.push_root, "/data/in");
	cr_expect_str_eq(c.log_file, "/var/log/quaid.log");
	cr_expect_eq(c.nroots, 0, "push_root alone is enough to parse");
	qsvc_conf_free(&c);

	value_bad("push_root", "incoming", "is not an absolute path");
	value_bad("push_root", "/data/../in", "'.' and '..' components are not allowed");
	value_bad("log_file", "quaid.log", "is not an absolute path");
	value_bad("log_file", "/var/log/", "names a directory, not a file");
	value_bad("log_file", "/", "names a directory, not a file");
	value_bad("push_root", "/in /", "a name that ends with a blank is not supported here");
	/* A ':' is a plain byte outside roots. */
	c = parse_ok("push_root = /data/in:coming\n");
	cr_expect_str_eq(c.push_root, "/data/in:coming");
	qsvc_conf_free(&c);
}

Test(svcconf, counts_and_their_bounds)
{
	static const struct {
		const char *key;
		unsigned min, max;
	} keys[] = {
	    {"max_clients", 1, 4096},	    {"max_streams", 1, 1024},
	    {"workers", 0, 1024},	    {"idle_timeout", 1, 86400},
	    {"handshake_timeout", 1, 3600}, {"max_host_connections", 1, 65536},
	};
	const char *bad[] = {"-1",   "+5",  "1.5", "ten",
			     "0x10", "5 0", "1e3", "18446744073709551617"};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char v[32], part[64];
		unsigned *field;
		struct qsvc_conf c;

		snprintf(part, sizeof(part), "expected a whole number from %u to %u", keys[i].min,
			 keys[i].max);
		for (int edge = 0; edge < 2; edge++) {
			unsigned want = edge ? keys[i].max : keys[i].min;

			snprintf(v, sizeof(v), "%u", want);
			c = value_ok(keys[i].key, v);
			field =
			    strcmp(keys[i].key, "max_clients") == 0	    ? &c.max_clients
			    : strcmp(keys[i].key, "max_streams") == 0	    ? &c.max_streams
			    : strcmp(keys[i].key, "workers") == 0	    ? &c.workers
			    : strcmp(keys[i].key, "handshake_timeout") == 0 ? &c.handshake_timeout
			    : strcmp(keys[i].key, "max_host_connections") == 0 ? &c.host_conn_max
									       : &c.idle_timeout;
			cr_expect_eq(*field, want, "%s = %s", keys[i].key, v);
			qsvc_conf_free(&c);
		}
		snprintf(v, sizeof(v), "%u", keys[i].max + 1);
		value_bad(keys[i].key, v, part);
		if (keys[i].min) {
			snprintf(v, sizeof(v), "%u", keys[i].min - 1);
			value_bad(keys[i].key, v, part);
		}
		for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++)
			value_bad(keys[i].key, bad[b], part);
	}
	/* Leading zeros are still decimal. */
	qsvc_conf_free((struct qsvc_conf[]){value_ok("max_clients", "0010")});
}

Test(svcconf, sizes_with_every_suffix)
{
	static const struct {
		const char *value;
		uint64_t bytes;
	} cases[] = {
	    {"33554432", 32 * MiB},
	    {"33554432B", 32 * MiB},
	    {"33554432b", 32 * MiB},
	    {"32768K", 32 * MiB},
	    {"32768k", 32 * MiB},
	    {"32768KiB", 32 * MiB},
	    {"32768kib", 32 * MiB},
	    {"32M", 32 * MiB},
	    {"32m", 32 * MiB},
	    {"32MiB", 32 * MiB},
	    {"32MIB", 32 * MiB},
	    {"32 MiB", 32 * MiB},
	    {"32\tM", 32 * MiB},
	    {"2G", 2 * GiB},
	    {"2g", 2 * GiB},
	    {"2GiB", 2 * GiB},
	    {"1T", TiB},
	    {"1t", TiB},
	    {"1TiB", TiB},
	    {"16777216", 16 * MiB},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[128];
		struct qsvc_conf c;

		snprintf(text, sizeof(text), "client_memory = %s\npinned = %s\n", cases[i].value,
			 cases[i].value);
		c = parse_ok(text);
		cr_expect_eq(c.client_memory, cases[i].bytes, "%s", cases[i].value);
		cr_expect_eq(c.pinned, cases[i].bytes, "%s", cases[i].value);
		qsvc_conf_free(&c);
	}
}

Test(svcconf, sizes_rejects)
{
	const char *not_sizes[] = {"12Q", "1.5G",  "-1G", "G",	   "MiB", "0x100M",
				   "1KB", "1 G B", "1Gi", "1GiBs", "1 0M"};
	const char *keys[] = {"client_memory", "pinned"};

	for (size_t k = 0; k < 2; k++) {
		for (size_t i = 0; i < sizeof(not_sizes) / sizeof(not_sizes[0]); i++)
			value_bad(keys[k], not_sizes[i], "is not a size (e.g. 256M, 1GiB)");
		value_bad(keys[k], "99999999999T", "'99999999999T' is too large");
		value_bad(keys[k], "16777216T", "is too large");
		value_bad(keys[k], "18446744073709551616", "is too large");
		value_bad(keys[k], "15M", "'15M' is less than the minimum, 16MiB");
		value_bad(keys[k], "16777215", "is less than the minimum, 16MiB");
		value_bad(keys[k], "0", "is less than the minimum");
	}
	/* The largest that fits: 16383 TiB and a bit. */
	qsvc_conf_free((struct qsvc_conf[]){parse_ok("pinned = 16777215T\n")});
}

Test(svcconf, the_header_example)
{
	parse_bad("listen = 127.0.0.1\nprovider = shm\n\nclient_memory = 12Q\n",
		  "4: client_memory: '12Q' is not a size (e.g. 256M, 1GiB)");
}

Test(svcconf, pinned_must_hold_client_memory)
{
	struct qsvc_conf c = parse_ok("client_memory = 1G\npinned = 1G\n");

	cr_expect_eq(c.client_memory, c.pinned);
	qsvc_conf_free(&c);
	parse_bad("client_memory = 1G\npinned = 512M\n",
		  "2: pinned: 512MiB is less than client_memory (1GiB)");
	parse_bad("pinned = 512M\nclient_memory = 1G\n",
		  "2: client_memory: 1GiB is more than pinned, the whole pool (512MiB)");
	parse_bad("# only one\nclient_memory = 2G\n",
		  "2: client_memory: 2GiB is more than pinned, the whole pool (1GiB, the default)");
	parse_bad("pinned = 128M\n", "1: pinned: 128MiB is less than client_memory (256MiB, "
				     "the default)");
}

Test(svcconf, log_levels)
{
	static const struct {
		const char *name;
		int level;
	} cases[] = {
	    {"error", QSVC_LOG_ERROR}, {"warning", QSVC_LOG_WARNING}, {"notice", QSVC_LOG_NOTICE},
	    {"info", QSVC_LOG_INFO},   {"debug", QSVC_LOG_DEBUG},
	};
	const char *bad[] = {"warn", "INFO", "Debug", "3", "err", "critical"};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct qsvc_conf c = value_ok("log_level", cases[i].name);

		cr_expect_eq(c.log_level, cases[i].level);
		cr_expect_str_eq(qsvc_log_level_name(cases[i].level), cases[i].name);
		qsvc_conf_free(&c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		value_bad("log_level", bad[i], "expected error, warning, notice, info or debug");
	cr_expect_null(qsvc_log_level_name(0));
	cr_expect_null(qsvc_log_level_name(2));
	cr_expect_null(qsvc_log_level_name(8));
	cr_expect_null(qsvc_log_level_name(-1));
}

/* ------------------------------------------------------------------------
 * Faults of the text
 * ------------------------------------------------------------------------ */

Test(svcconf, unknown_key)
{
	parse_bad("listen = 127.0.0.1\n\nfrobnicate = 3\n",
		  "3: frobnicate: unknown key (the keys are listed in quaid(8), docs/quaid.md)");
	/* Near misses too: no guessing. */
	parse_bad("max_client = 3\n",
		  "1: max_client: unknown key (the keys are listed in quaid(8), docs/quaid.md)");
}

Test(svcconf, duplicate_key)
{
	parse_bad("listen = 127.0.0.1\nzone = eu\nlisten = 127.0.0.2\n",
		  "3: duplicate key 'listen' (first set on line 1)");
}

Test(svcconf, malformed_lines)
{
	parse_bad("listen = 127.0.0.1\njust words\n", "2: expected 'key = value'");
	parse_bad("Listen = 127.0.0.1\n", "1: invalid key 'Listen'");
	/* The whole text is checked before any value: the syntax fault wins
	 * even when a bad value comes first. */
	parse_bad("pinned = lots\nno equals sign\n", "2: expected 'key = value'");
}

Test(svcconf, empty_values)
{
	const char *keys[] = {"listen",
			      "provider",
			      "zone",
			      "roots",
			      "push_root",
			      "max_clients",
			      "max_streams",
			      "client_memory",
			      "pinned",
			      "workers",
			      "idle_timeout",
			      "log_level",
			      "log_file",
			      "audit_log",
			      "munge_socket",
			      "unauthenticated",
			      "zone_hosts",
			      "handshake_timeout",
			      "max_host_connections"};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char text[64], want[128];

		snprintf(text, sizeof(text), "%s =   \n", keys[i]);
		snprintf(want, sizeof(want), "1: %s: no value (leave the key out for its default)",
			 keys[i]);
		parse_bad(text, want);
	}
}

Test(svcconf, messages_show_values_safely)
{
	char text[300], err[512];
	struct qsvc_conf c;

	snprintf(text, sizeof(text), "zone = a\x1b[31mb\n");
	qsvc_conf_init(&c);
	cr_assert_eq(qsvc_conf_parse(text, strlen(text), &c, err, sizeof(err)), -QUAI_EFORMAT);
	cr_expect_str_eq(err, "1: zone: 'a?[31mb' is not a zone label (1 to 63 bytes of A-Z a-z "
			      "0-9 . _ -, not . or ..)");
	memset(text, 0, sizeof(text));
	memcpy(text, "zone = ", 7);
	memset(text + 7, 'z', 200);
	cr_assert_eq(qsvc_conf_parse(text, strlen(text), &c, err, sizeof(err)), -QUAI_EFORMAT);
	cr_expect(strstr(err, "zzz...' is not a zone label") != NULL, "%s", err);
	cr_expect_lt(strlen(err), 200);
	/* A small err buffer is cut, always terminated. */
	cr_assert_eq(qsvc_conf_parse(text, strlen(text), &c, err, 8), -QUAI_EFORMAT);
	cr_expect_str_eq(err, "1: zone");
	cr_assert_eq(qsvc_conf_parse(text, strlen(text), &c, NULL, 0), -QUAI_EFORMAT);
	qsvc_conf_free(&c);
}

Test(svcconf, a_second_parse_replaces)
{
	struct qsvc_conf c = parse_ok("roots = /a:/b\npush_root = /p\nlog_file = /l\n");
	char err[256];
	const char *again = "roots = /c\npush_root = /q\nlog_file = /m\n";

	cr_assert_eq(qsvc_conf_parse(again, strlen(again), &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.nroots, 1);
	cr_expect_str_eq(c.roots[0], "/c");
	cr_expect_str_eq(c.push_root, "/q");
	cr_expect_str_eq(c.log_file, "/m");
	qsvc_conf_free(&c);
	cr_expect_eq(c.nroots, 0);
	cr_expect_null(c.push_root);
	cr_expect_null(c.log_file);
}

/* ------------------------------------------------------------------------
 * Overrides
 * ------------------------------------------------------------------------ */

Test(svcconf, set_overrides_one_key)
{
	struct qsvc_conf c = parse_ok("listen = 10.0.0.1:7000\nroots = /a\nlog_file = /l\n");
	char err[256] = "untouched";

	cr_assert_eq(qsvc_conf_set(&c, "listen", "[::1]:0", err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(c.listen_node, "::1");
	cr_expect_str_eq(c.listen_service, "0");
	cr_expect_str_eq(c.roots[0], "/a", "other keys untouched");
	cr_expect_str_eq(c.log_file, "/l");
	cr_assert_eq(qsvc_conf_set(&c, "provider", "shm", err, sizeof(err)), 0);
	cr_assert_eq(qsvc_conf_set(&c, "log_level", "debug", err, sizeof(err)), 0);
	cr_assert_eq(qsvc_conf_set(&c, "roots", "/x:/y", err, sizeof(err)), 0);
	cr_assert_eq(qsvc_conf_set(&c, "log_file", "/other", err, sizeof(err)), 0);
	cr_assert_eq(qsvc_conf_set(&c, "push_root", "/p", err, sizeof(err)), 0);
	cr_expect_str_eq(err, "untouched");
	cr_expect_str_eq(c.provider, "shm");
	cr_expect_eq(c.log_level, QSVC_LOG_DEBUG);
	cr_assert_eq(c.nroots, 2);
	cr_expect_str_eq(c.roots[1], "/y");
	cr_expect_str_eq(c.log_file, "/other");
	cr_expect_str_eq(c.push_root, "/p");
	qsvc_conf_free(&c);
}

Test(svcconf, a_failed_set_changes_nothing)
{
	struct qsvc_conf c = parse_ok("listen = 10.0.0.1:7000\nroots = /a\nclient_memory = 512M\n");
	char err[256];

	cr_expect_eq(qsvc_conf_set(&c, "listen", "10.0.0.1:70000", err, sizeof(err)),
		     -QUAI_EFORMAT);
	cr_expect_str_eq(err,
			 "listen: '10.0.0.1:70000': the port must be a number from 0 to 65535");
	cr_expect_eq(qsvc_conf_set(&c, "roots", "/b:/b", err, sizeof(err)), -QUAI_EFORMAT);
	cr_expect_str_eq(err, "roots: '/b' is listed twice");
	cr_expect_eq(qsvc_conf_set(&c, "pinned", "256M", err, sizeof(err)), -QUAI_EFORMAT);
	cr_expect_str_eq(err, "pinned: 256MiB is less than client_memory (512MiB)");
	cr_expect_eq(qsvc_conf_set(&c, "log_level", "", err, sizeof(err)), -QUAI_EFORMAT);
	cr_expect_str_eq(err, "log_level: no value (leave the key out for its default)");
	cr_expect_eq(qsvc_conf_set(&c, "bogus", "1", err, sizeof(err)), -QUAI_EFORMAT);
	cr_expect_str_eq(err,
			 "bogus: unknown key (the keys are listed in quaid(8), docs/quaid.md)");
	cr_expect_str_eq(c.listen_node, "10.0.0.1");
	cr_expect_str_eq(c.listen_service, "7000");
	cr_assert_eq(c.nroots, 1);
	cr_expect_str_eq(c.roots[0], "/a");
	cr_expect_eq(c.pinned, 1 * GiB);
	cr_expect_eq(c.log_level, QSVC_LOG_INFO);
	qsvc_conf_free(&c);
}

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */

Test(svcconf, load)
{
	char path[PATH_MAX + 64], err[PATH_MAX + 512] = "untouched";
	struct qsvc_conf c;

	make_file("quaid.conf", "listen = 127.0.0.1:0\nroots = /srv/data\n");
	path_in(path, sizeof(path), "quaid.conf");
	qsvc_conf_init(&c);
	cr_assert_eq(qsvc_conf_load(path, &c, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(err, "untouched");
	cr_expect_str_eq(c.listen_service, "0");
	cr_expect_str_eq(c.roots[0], "/srv/data");
	qsvc_conf_free(&c);
}

Test(svcconf, load_errors_start_with_the_path)
{
	char path[PATH_MAX + 64], err[PATH_MAX + 512], want[PATH_MAX + 512];
	struct qsvc_conf c;

	qsvc_conf_init(&c);
	path_in(path, sizeof(path), "missing.conf");
	cr_expect_eq(qsvc_conf_load(path, &c, err, sizeof(err)), -ENOENT);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	cr_expect_str_eq(err, want);

	make_file("bad.conf", "# site\nmax_streams = 0\n");
	path_in(path, sizeof(path), "bad.conf");
	cr_expect_eq(qsvc_conf_load(path, &c, err, sizeof(err)), -QUAI_EFORMAT);
	snprintf(want, sizeof(want),
		 "%s:2: max_streams: '0': expected a whole number from 1 to 1024", path);
	cr_expect_str_eq(err, want);

	make_file("dup.conf", "zone = a\nzone = b\n");
	path_in(path, sizeof(path), "dup.conf");
	cr_expect_eq(qsvc_conf_load(path, &c, err, sizeof(err)), -QUAI_EFORMAT);
	snprintf(want, sizeof(want), "%s:2: duplicate key 'zone' (first set on line 1)", path);
	cr_expect_str_eq(err, want);

	make_file("across.conf", "pinned = 100M\n");
	path_in(path, sizeof(path), "across.conf");
	cr_expect_eq(qsvc_conf_load(path, &c, err, sizeof(err)), -QUAI_EFORMAT);
	snprintf(want, sizeof(want),
		 "%s:1: pinned: 100MiB is less than client_memory (256MiB, the default)", path);
	cr_expect_str_eq(err, want);

	cr_expect_eq(qsvc_conf_load(dir, &c, err, sizeof(err)), -EISDIR);
	snprintf(want, sizeof(want), "%s: Is a directory", dir);
	cr_expect_str_eq(err, want);
	qsvc_conf_free(&c);
}

/* ------------------------------------------------------------------------
 * Checks on this host
 * ------------------------------------------------------------------------ */

static struct qsvc_conf conf_with_dirs(void)
{
	char text[4 * PATH_MAX];
	struct qsvc_conf c;

	make_dir("r1");
	make_dir("r2");
	make_dir("in");
	snprintf(text, sizeof(text),
		 "roots = %s/r1:%s/r2\npush_root = %s/in\nlog_file = %s/quaid.log\n"
		 "client_memory = 16M\npinned = 16M\n",
		 dir, dir, dir, dir);
	c = parse_ok(text);
	return c;
}

Test(svcconf, check_passes_on_a_good_host)
{
	struct qsvc_conf c = conf_with_dirs();
	char *out = NULL;

	need_memlock(c.pinned);
	cr_expect_eq(check(&c, &out), 0, "%s", out);
	cr_expect_str_eq(out, "");
	free(out);
	cr_expect_eq(qsvc_conf_check(&c, NULL), 0);
	/* A log file that exists already is fine too. */
	make_file("quaid.log", "old lines\n");
	cr_expect_eq(check(&c, &out), 0, "%s", out);
	free(out);
	qsvc_conf_free(&c);
}

Test(svcconf, check_finds_every_problem)
{
	struct qsvc_conf c = conf_with_dirs();
	char text[4 * PATH_MAX], *out = NULL, want[PATH_MAX + 256];

	need_memlock(c.pinned);
	make_file("file", "x");
	snprintf(text, sizeof(text), "roots = %s/r1:%s/gone:%s/file\npush_root = %s/file/sub\n",
		 dir, dir, dir, dir);
	cr_assert_eq(qsvc_conf_parse(text, strlen(text), &c, NULL, 0), 0);
	cr_expect_eq(check(&c, &out), -QUAI_EFORMAT);
	cr_expect_eq(count_lines(out), 3, "%s", out);
	snprintf(want, sizeof(want), "roots: %s/gone: No such file or directory\n", dir);
	cr_expect(strstr(out, want) != NULL, "%s", out);
	snprintf(want, sizeof(want), "roots: %s/file: not a directory\n", dir);
	cr_expect(strstr(out, want) != NULL, "%s", out);
	snprintf(want, sizeof(want), "push_root: %s/file/sub: Not a directory\n", dir);
	cr_expect(strstr(out, want) != NULL, "%s", out);
	free(out);
	cr_expect_eq(qsvc_conf_check(&c, NULL), -QUAI_EFORMAT);
	qsvc_conf_free(&c);
}

Test(svcconf, check_push_root_that_is_a_file)
{
	struct qsvc_conf c = conf_with_dirs();
	char text[PATH_MAX + 64], *out = NULL, want[PATH_MAX + 256];

	need_memlock(c.pinned);
	make_file("regular", "x");
	snprintf(text, sizeof(text), "push_root = %s/regular\n", dir);
	cr_assert_eq(qsvc_conf_parse(text, strlen(text), &c, NULL, 0), 0);
	cr_expect_eq(check(&c, &out), -QUAI_EFORMAT);
	snprintf(want, sizeof(want), "push_root: %s/regular: not a directory\n", dir);
	cr_expect_str_eq(out, want);
	free(out);
	qsvc_conf_free(&c);
}

Test(svcconf, check_push_root_not_writable)
{
	struct qsvc_conf c = conf_with_dirs();
	char path[PATH_MAX + 64], *out = NULL, want[PATH_MAX + 256];

	need_memlock(c.pinned);
	path_in(path, sizeof(path), "in");
	cr_assert_eq(chmod(path, 0555), 0);
	if (lose_dac_override(path) < 0)
		cr_skip_test("cannot make %s read-only to this process", path);
	cr_expect_eq(check(&c, &out), -QUAI_EFORMAT);
	snprintf(want, sizeof(want), "push_root: %s: cannot write in it: Permission denied\n",
		 path);
	cr_expect_str_eq(out, want);
	free(out);
	chmod(path, 0755);
	qsvc_conf_free(&c);
}

Test(svcconf, check_needs_something_to_serve)
{
	struct qsvc_conf c;
	char *out = NULL;

	qsvc_conf_init(&c);
	c.pinned = c.client_memory = 16 * MiB;
	need_memlock(c.pinned);
	cr_expect_eq(check(&c, &out), -QUAI_EFORMAT);
	cr_expect_str_eq(out, "roots: none, and no push_root: nothing to serve\n");
	free(out);
	qsvc_conf_free(&c);
}

Test(svcconf, check_fields_set_by_hand)
{
	struct qsvc_conf c = conf_with_dirs();
	char *out = NULL;

	need_memlock(c.pinned);
	snprintf(c.zone, sizeof(c.zone), "no good");
	c.client_memory = 32 * MiB;
	cr_expect_eq(check(&c, &out), -QUAI_EFORMAT);
	cr_expect_str_eq(out, "zone: 'no good' is not a zone label\n"
			      "client_memory: 32MiB is more than pinned, the whole pool (16MiB)\n");
	free(out);
	qsvc_conf_free(&c);
}

Test(svcconf, check_log_file)
{
	struct qsvc_conf c = conf_with_dirs();
	char text[PATH_MAX + 64], *out = NULL, want[PATH_MAX + 256];

	need_memlock(c.pinned);
	snprintf(text, sizeof(text), "log_file = %s/no-dir/quaid.log\n", dir);
	cr_assert_eq(qsvc_conf_parse(text, strlen(text), &c, NULL, 0), 0);
	cr_expect_eq(check(&c, &out), -QUAI_EFORMAT);
	snprintf(want, sizeof(want),
		 "log_file: %s/no-dir/quaid.log: its directory %s/no-dir does "
		 "not exist\n",
		 dir, dir);
	cr_expect_str_eq(out, want);
	free(out);

	snprintf(text, sizeof(text), "log_file = %s/r1\n", dir);
	cr_assert_eq(qsvc_conf_parse(text, strlen(text), &c, NULL, 0), 0);
	cr_expect_eq(check(&c, &out), -QUAI_EFORMAT);
	snprintf(want, sizeof(want), "log_file: %s/r1: is a directory\n", dir);
	cr_expect_str_eq(out, want);
	free(out);
	qsvc_conf_free(&c);
}

Test(svcconf, check_pinned_against_RLIMIT_MEMLOCK)
{
	struct qsvc_conf c = conf_with_dirs();
	char *out = NULL;

	c.pinned = 1 * GiB;
	if (tu_forbid_mlock() < 0)
		cr_skip_test("cannot limit locked memory here");
	cr_expect_eq(check(&c, &out), -QUAI_EFORMAT);
	cr_expect_str_eq(out, "pinned: 1GiB is more than this process may lock: RLIMIT_MEMLOCK is "
			      "64KiB (soft), 64KiB (hard), and it lacks CAP_IPC_LOCK. Raise the "
			      "limit (LimitMEMLOCK=infinity in the systemd unit, `ulimit -l`, or "
			      "/etc/security/limits.conf) or make pinned smaller\n");
	free(out);
	/* Within the limit: fine. */
	c.pinned = c.client_memory = 16 * MiB;
	{
		struct rlimit rl = {32 * MiB, 32 * MiB};

		if (setrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
			cr_expect_eq(check(&c, &out), 0, "%s", out);
			free(out);
		}
	}
	qsvc_conf_free(&c);
}

/* ------------------------------------------------------------------------
 * Printing
 * ------------------------------------------------------------------------ */

Test(svcconf, print_defaults_commented_out)
{
	struct qsvc_conf c;
	char *out, want[PATH_MAX + 1024];

	qsvc_conf_init(&c);
	out = print(&c);
	snprintf(want, sizeof(want),
		 "# listen = 0.0.0.0:7470 (default)\n"
		 "# provider = tcp;ofi_rxm (default)\n"
		 "# zone = none (default: the host's, from %s/no-host.conf)\n"
		 "# roots = (default: none)\n"
		 "# push_root = (default: none: pushes are refused)\n"
		 "# max_clients = 64 (default)\n"
		 "# max_streams = 8 (default: per client)\n"
		 "# client_memory = 256MiB (default)\n"
		 "# pinned = 1GiB (default)\n"
		 "# workers = 0 (default: one per online core)\n"
		 "# idle_timeout = 60 (default: seconds)\n"
		 "# handshake_timeout = 10 (default: seconds)\n"
		 "# max_host_connections = 256 (default: per client address)\n"
		 "# log_level = info (default)\n"
		 "# log_file = (default: standard error)\n"
		 "# audit_log = (default: none: requests are not audited)\n"
		 "# munge_socket = (default: libmunge's, /run/munge/munge.socket.2)\n"
		 "# unauthenticated = no (default)\n"
		 "# zone_hosts = (default: none: sensitive data is streamed and pulled to no "
		 "host)\n"
		 "# no rule_ lines: every authenticated request will be refused\n",
		 dir);
	cr_expect_str_eq(out, want);
	free(out);

	cr_assert_eq(setenv("FI_PROVIDER", "shm", 1), 0);
	out = print(&c);
	cr_expect(strstr(out, "\n# provider = shm (default: from $FI_PROVIDER)\n") != NULL, "%s",
		  out);
	free(out);
	qsvc_conf_free(&c);
}

static const char every_key_text[] = "listen = [fe80::1%eth0]:7000\n"
				     "provider = verbs;ofi_rxm\n"
				     "zone = eu-west\n"
				     "roots = /data/a:/data/b\n"
				     "push_root = /data/in\n"
				     "max_clients = 128\n"
				     "max_streams = 4\n"
				     "client_memory = 123456789\n"
				     "pinned = 3T\n"
				     "workers = 12\n"
				     "idle_timeout = 300\n"
				     "handshake_timeout = 30\n"
				     "max_host_connections = 1000\n"
				     "log_level = debug\n"
				     "log_file = /var/log/quaid #1.log\n"
				     "rule_all_root = allow all users=root\n"
				     "audit_log = /var/log/quai//audit.log\n"
				     "munge_socket = /run/munge/munge.socket.2\n"
				     "unauthenticated = public\n"
				     "zone_hosts = 10.1.0.0/16 fd00:1::/64\n"
				     "rule_train = allow  read,list groups=nogroup,gid:7 "
				     "classes=internal,public\n";

Test(svcconf, print_settings)
{
	struct qsvc_conf c = parse_ok(every_key_text);
	char *out = print(&c);

	cr_expect_str_eq(out, "listen = [fe80::1%eth0]:7000\n"
			      "provider = verbs;ofi_rxm\n"
			      "zone = eu-west\n"
			      "roots = /data/a:/data/b\n"
			      "push_root = /data/in\n"
			      "max_clients = 128\n"
			      "max_streams = 4\n"
			      "client_memory = 123456789\n"
			      "pinned = 3TiB\n"
			      "workers = 12\n"
			      "idle_timeout = 300\n"
			      "handshake_timeout = 30\n"
			      "max_host_connections = 1000\n"
			      "log_level = debug\n"
			      "log_file = /var/log/quaid #1.log\n"
			      "audit_log = /var/log/quai/audit.log\n"
			      "munge_socket = /run/munge/munge.socket.2\n"
			      "unauthenticated = public\n"
			      "zone_hosts = 10.1.0.0/16,fd00:1::/64\n"
			      "rule_all_root = allow all users=root\n"
			      "rule_train = allow list,stream,pull groups=nogroup,gid:7 "
			      "classes=public,internal\n");
	free(out);
	qsvc_conf_free(&c);
}

static void expect_same(const struct qsvc_conf *a, const struct qsvc_conf *b)
{
	cr_expect_str_eq(a->listen_node, b->listen_node);
	cr_expect_str_eq(a->listen_service, b->listen_service);
	cr_expect_str_eq(a->provider, b->provider);
	cr_expect_str_eq(a->zone, b->zone);
	cr_assert_eq(a->nroots, b->nroots);
	for (unsigned i = 0; i < a->nroots; i++)
		cr_expect_str_eq(a->roots[i], b->roots[i]);
	cr_expect((!a->push_root && !b->push_root) ||
		  (a->push_root && b->push_root && strcmp(a->push_root, b->push_root) == 0));
	cr_expect_eq(a->max_clients, b->max_clients);
	cr_expect_eq(a->max_streams, b->max_streams);
	cr_expect_eq(a->client_memory, b->client_memory);
	cr_expect_eq(a->pinned, b->pinned);
	cr_expect_eq(a->workers, b->workers);
	cr_expect_eq(a->idle_timeout, b->idle_timeout);
	cr_expect_eq(a->handshake_timeout, b->handshake_timeout);
	cr_expect_eq(a->host_conn_max, b->host_conn_max);
	cr_expect_eq(a->log_level, b->log_level);
	cr_expect((!a->log_file && !b->log_file) ||
		  (a->log_file && b->log_file && strcmp(a->log_file, b->log_file) == 0));
	cr_expect((!a->audit_log && !b->audit_log) ||
		  (a->audit_log && b->audit_log && strcmp(a->audit_log, b->audit_log) == 0));
	cr_expect_str_eq(a->munge_socket, b->munge_socket);
	{
		char pa[4096], pb[4096];

		qpol_format(a->policy, pa, sizeof(pa));
		qpol_format(b->policy, pb, sizeof(pb));
		cr_expect_str_eq(pa, pb);
		cr_expect_str_eq(qpol_zone(a->policy), qpol_zone(b->policy));
	}
}

/* What --check-config prints is a configuration file that means the same. */
Test(svcconf, print_reads_back_the_same)
{
	const char *texts[] = {"", every_key_text, "listen = [::1]:7470\nzone = none\n",
			       "roots = /\nworkers = 0\nprovider = tcp;ofi_rxm\n"};

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct qsvc_conf a = parse_ok(texts[i]), b;
		char *out = print(&a);

		b = parse_ok(out);
		expect_same(&a, &b);
		free(out);
		qsvc_conf_free(&a);
		qsvc_conf_free(&b);
	}
}

/* ------------------------------------------------------------------------
 * The access policy and its neighbours: rule_NAME, zone_hosts,
 * unauthenticated, audit_log, munge_socket
 * ------------------------------------------------------------------------ */

static char *policy_text(const struct qsvc_conf *c)
{
	size_t n = qpol_format(c->policy, NULL, 0);
	char *text = malloc(n + 1);

	cr_assert_not_null(text);
	qpol_format(c->policy, text, n + 1);
	return text;
}

Test(svcconf, policy_keys)
{
	struct qsvc_conf c = parse_ok("rule_root = allow all users=root\n"
				      "zone_hosts = 10.1.0.0/16\n"
				      "rule_b = deny push\n"
				      "unauthenticated = public\n"
				      "rule_a = allow read groups=nogroup\n"
				      "audit_log = /var/log/quai/audit.log\n"
				      "munge_socket = /run/munge//munge.socket.2\n");
	char *text = policy_text(&c);

	cr_expect_eq(qpol_nrules(c.policy), 3);
	cr_expect_eq(qpol_unauthenticated(c.policy), 1);
	/* In file order, not by name. */
	cr_expect_str_eq(text, "unauthenticated = public\n"
			       "zone_hosts = 10.1.0.0/16\n"
			       "rule_root = allow all users=root\n"
			       "rule_b = deny push\n"
			       "rule_a = allow stream,pull groups=nogroup\n");
	cr_expect_str_eq(c.audit_log, "/var/log/quai/audit.log");
	cr_expect_str_eq(c.munge_socket, "/run/munge/munge.socket.2");
	free(text);
	qsvc_conf_free(&c);
	cr_expect_null(c.policy);
	cr_expect_null(c.audit_log);
	qsvc_conf_free(&c);
}

/* A "zone =" after the rules still sets the policy's zone. */
Test(svcconf, the_policy_has_the_final_zone)
{
	struct qsvc_conf c = parse_ok("rule_all = allow all\nzone = fr-1\n");
	struct qpol_subject s = {.authenticated = 1, .uid = 0};
	struct qpol_request rq = {QPOL_PUSH, "era5", QUAI_CLASS_SENSITIVE, "fr-1"};
	struct qpol_decision d;
	char err[256];

	cr_expect_str_eq(qpol_zone(c.policy), "fr-1");
	cr_expect_eq(qpol_decide(c.policy, &s, &rq, &d), 1, "%s: %s", d.rule, d.why);
	/* An override of the zone too. */
	cr_assert_eq(qsvc_conf_set(&c, "zone", "de-1", err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(qpol_zone(c.policy), "de-1");
	cr_expect_eq(qpol_decide(c.policy, &s, &rq, &d), 0);
	cr_expect_str_eq(d.rule, "sovereign:zone");
	qsvc_conf_free(&c);
}

Test(svcconf, policy_keys_rejects)
{
	parse_bad("rule_x = allow reed\n",
		  "1: rule_x: ops: 'reed' is not list, stream, pull, push, read, write or all");
	parse_bad("zone = eu\n\nrule_x = allow read groups=train\n",
		  "3: rule_x: groups: no group 'train' on this host");
	parse_bad("rule_x = allow read hosts=10.0.0.0/33\n",
		  "1: rule_x: hosts: '10.0.0.0/33' is not an address or prefix (an IPv4 prefix "
		  "length is 0 to 32)");
	parse_bad("rule_x = allow read users=root users=root\n",
		  "1: rule_x: 'users=root': users given twice in one rule (put every value in one "
		  "list)");
	parse_bad("rule_x = allow read hosts=::1 owner=root\n",
		  "1: rule_x: 'owner=root': unknown condition (the conditions are users, groups, "
		  "classes, datasets, hosts)");
	parse_bad("rule_x = allow read users=\n",
		  "1: rule_x: users: an empty list (leave the condition out to match any)");
	parse_bad("rule_x =\n", "1: rule_x: no value: expected allow|deny OPS [users=...] "
				"[groups=...] [classes=...] [datasets=...] [hosts=...]");
	parse_bad("rule_ = allow all\n",
		  "1: rule_: a rule needs a name (rule_NAME, e.g. rule_train_read)");
	parse_bad("rule_x = allow all\nrule_x = deny all\n",
		  "2: duplicate key 'rule_x' (first set on line 1)");
	parse_bad("rules = allow all\n",
		  "1: rules: unknown key (the keys are listed in quaid(8), docs/quaid.md)");
	parse_bad("rule = allow all\n",
		  "1: rule: unknown key (the keys are listed in quaid(8), docs/quaid.md)");
	parse_bad("zone_hosts = 10.0.0.1,,10.0.0.2\n",
		  "1: zone_hosts: an empty entry in '10.0.0.1,,10.0.0.2'");
	parse_bad("zone_hosts = io-node-3\n",
		  "1: zone_hosts: 'io-node-3' is not an address or prefix");
	parse_bad("unauthenticated = yes\n",
		  "1: unauthenticated: 'yes': expected no (every client authenticates) or public "
		  "(clients without a credential may read public datasets)");
	parse_bad("audit_log = audit.log\n", "1: audit_log: 'audit.log' is not an absolute path");
	parse_bad("audit_log = /var/log/quai/\n",
		  "1: audit_log: '/var/log/quai/' names a directory, not a file");
	parse_bad("audit_log = /var/log/../audit.log\n",
		  "1: audit_log: '/var/log/../audit.log': '.' and '..' components are not allowed");
	parse_bad("munge_socket = run/munge.socket\n",
		  "1: munge_socket: 'run/munge.socket' is not an absolute path");
	{
		char text[256], want[256];

		snprintf(text, sizeof(text), "munge_socket = /run/%0110d\n", 1);
		snprintf(want, sizeof(want),
			 "1: munge_socket: '/run/%059d...' is longer than 107 bytes, the most a "
			 "socket's path holds",
			 0);
		parse_bad(text, want);
		/* 107 bytes is fine. */
		snprintf(text, sizeof(text), "munge_socket = /run/%0102d\n", 1);
		qsvc_conf_free((struct qsvc_conf[]){parse_ok(text)});
	}
}

/* A second text adds its rules after the first's; a name already set is
 * refused. */
Test(svcconf, a_second_parse_adds_rules)
{
	struct qsvc_conf c = parse_ok("rule_a = allow list\nzone_hosts = 10.0.0.0/8\n");
	const char *more = "rule_b = allow pull\nzone_hosts = 10.2.0.0/16\n";
	const char *again = "rule_a = deny all\n";
	char err[256], *text;

	cr_assert_eq(qsvc_conf_parse(more, strlen(more), &c, err, sizeof(err)), 0, "%s", err);
	text = policy_text(&c);
	cr_expect_str_eq(text, "# unauthenticated = no (default)\n"
			       "zone_hosts = 10.2.0.0/16\n"
			       "rule_a = allow list\n"
			       "rule_b = allow pull\n");
	free(text);
	cr_expect_eq(qsvc_conf_parse(again, strlen(again), &c, err, sizeof(err)), -QUAI_EFORMAT);
	cr_expect_str_eq(err, "1: rule_a: a rule named 'a' is already set");
	qsvc_conf_free(&c);
}

Test(svcconf, set_policy_keys)
{
	struct qsvc_conf c = parse_ok("rule_a = allow list\n");
	char err[256] = "", *text;

	cr_expect_eq(qsvc_conf_set(&c, "rule_b", "allow all", err, sizeof(err)), -QUAI_EFORMAT);
	cr_expect_str_eq(err, "rule_b: rules are set in the configuration file only");
	cr_expect_eq(qpol_nrules(c.policy), 1);

	cr_expect_eq(qsvc_conf_set(&c, "zone_hosts", "10.0.0.0/8", err, sizeof(err)), 0);
	cr_expect_eq(qsvc_conf_set(&c, "zone_hosts", "10.0.0.0/6", err, sizeof(err)),
		     -QUAI_EFORMAT);
	cr_expect_str_eq(err, "zone_hosts: '10.0.0.0/6' has bits set after its /6 prefix (the "
			      "network is written with them zero)");
	cr_expect_eq(qsvc_conf_set(&c, "unauthenticated", "public", err, sizeof(err)), 0);
	cr_expect_eq(qsvc_conf_set(&c, "unauthenticated", "maybe", err, sizeof(err)),
		     -QUAI_EFORMAT);
	text = policy_text(&c);
	cr_expect_str_eq(text, "unauthenticated = public\n"
			       "zone_hosts = 10.0.0.0/8\n"
			       "rule_a = allow list\n");
	free(text);

	cr_expect_eq(qsvc_conf_set(&c, "audit_log", "/a/audit.log", err, sizeof(err)), 0);
	cr_expect_eq(qsvc_conf_set(&c, "audit_log", "/b/audit.log", err, sizeof(err)), 0);
	cr_expect_eq(qsvc_conf_set(&c, "audit_log", "b/audit.log", err, sizeof(err)),
		     -QUAI_EFORMAT);
	cr_expect_str_eq(err, "audit_log: 'b/audit.log' is not an absolute path");
	cr_expect_str_eq(c.audit_log, "/b/audit.log");
	cr_expect_eq(qsvc_conf_set(&c, "munge_socket", "/run/m.sock", err, sizeof(err)), 0);
	cr_expect_eq(qsvc_conf_set(&c, "munge_socket", "m.sock", err, sizeof(err)), -QUAI_EFORMAT);
	cr_expect_str_eq(c.munge_socket, "/run/m.sock");
	/* Other keys keep the policy and the paths. */
	cr_expect_eq(qsvc_conf_set(&c, "pinned", "2G", err, sizeof(err)), 0);
	cr_expect_eq(qsvc_conf_set(&c, "pinned", "1M", err, sizeof(err)), -QUAI_EFORMAT);
	cr_expect_str_eq(c.audit_log, "/b/audit.log");
	cr_expect_eq(qpol_nrules(c.policy), 1);
	qsvc_conf_free(&c);
}

Test(svcconf, check_audit_log)
{
	struct qsvc_conf c = conf_with_dirs();
	char text[PATH_MAX + 64], *out = NULL, want[2 * PATH_MAX + 256];

	need_memlock(c.pinned);
	snprintf(text, sizeof(text), "audit_log = %s/audit.log\n", dir);
	cr_assert_eq(qsvc_conf_parse(text, strlen(text), &c, NULL, 0), 0);
	cr_expect_eq(check(&c, &out), 0, "%s", out);
	free(out);

	snprintf(text, sizeof(text), "audit_log = %s/no-dir/audit.log\n", dir);
	cr_assert_eq(qsvc_conf_parse(text, strlen(text), &c, NULL, 0), 0);
	cr_expect_eq(check(&c, &out), -QUAI_EFORMAT);
	snprintf(want, sizeof(want),
		 "audit_log: %s/no-dir/audit.log: its directory %s/no-dir does not exist\n", dir,
		 dir);
	cr_expect_str_eq(out, want);
	free(out);

	snprintf(text, sizeof(text), "audit_log = %s/r1\n", dir);
	cr_assert_eq(qsvc_conf_parse(text, strlen(text), &c, NULL, 0), 0);
	cr_expect_eq(check(&c, &out), -QUAI_EFORMAT);
	snprintf(want, sizeof(want), "audit_log: %s/r1: is a directory\n", dir);
	cr_expect_str_eq(out, want);
	free(out);
	qsvc_conf_free(&c);
}

Test(svcconf, check_audit_log_not_writable)
{
	struct qsvc_conf c = conf_with_dirs();
	char text[2 * PATH_MAX], path[PATH_MAX + 64], *out = NULL, want[2 * PATH_MAX + 256];

	need_memlock(c.pinned);
	make_dir("ro");
	path_in(path, sizeof(path), "ro");
	snprintf(text, sizeof(text), "audit_log = %s/audit.log\n", path);
	cr_assert_eq(qsvc_conf_parse(text, strlen(text), &c, NULL, 0), 0);
	cr_assert_eq(chmod(path, 0555), 0);
	if (lose_dac_override(path) < 0)
		cr_skip_test("cannot make %s read-only to this process", path);
	cr_expect_eq(check(&c, &out), -QUAI_EFORMAT);
	snprintf(want, sizeof(want),
		 "audit_log: %s/audit.log: cannot create it in %s: Permission denied\n", path,
		 path);
	cr_expect_str_eq(out, want);
	free(out);
	chmod(path, 0755);
	qsvc_conf_free(&c);
}

Test(svcconf, warn_without_rules)
{
	struct qsvc_conf c = conf_with_dirs();
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	cr_assert_not_null(f);
	cr_expect_eq(qsvc_conf_warn(&c, f), 1);
	cr_assert_eq(fclose(f), 0);
	cr_expect_str_eq(out, "warning: no rule_ lines: every authenticated request will be "
			      "refused\n");
	free(out);
	/* Not a problem: quaid starts. */
	need_memlock(c.pinned);
	cr_expect_eq(qsvc_conf_check(&c, NULL), 0);

	cr_assert_eq(qsvc_conf_set(&c, "unauthenticated", "public", NULL, 0), 0);
	f = open_memstream(&out, &len);
	cr_assert_not_null(f);
	cr_expect_eq(qsvc_conf_warn(&c, f), 1);
	cr_assert_eq(fclose(f), 0);
	cr_expect_str_eq(out, "warning: no rule_ lines: every authenticated request will be "
			      "refused (unauthenticated clients may read public datasets)\n");
	free(out);
	qsvc_conf_free(&c);

	c = parse_ok("rule_a = allow list\n");
	cr_expect_eq(qsvc_conf_warn(&c, NULL), 0);
	f = open_memstream(&out, &len);
	cr_assert_not_null(f);
	cr_expect_eq(qsvc_conf_warn(&c, f), 0);
	cr_assert_eq(fclose(f), 0);
	cr_expect_str_eq(out, "");
	free(out);
	qsvc_conf_free(&c);
}
