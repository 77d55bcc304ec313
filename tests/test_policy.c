/* SPDX-License-Identifier: Apache-2.0 */
/* quaid's data policy (stager/site/policy.h): every parse error with its
 * message, the normalised form, and the decisions: users, groups, classes,
 * datasets, hosts, zones and operations, the fixed checks before the
 * rules, and the order of the rules. Names are those every Debian host
 * has: root (0), daemon (1), nobody (65534), group nogroup (65534). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it; standalone builds may not */
#endif
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "quai/quai.h"

TestSuite(policy);

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static struct qpol *pol(const char *zone)
{
	struct qpol *p = qpol_new(zone);

	cr_assert_not_null(p);
	return p;
}

static void add_ok(struct qpol *p, const char *name, const char *value)
{
	char err[512] = "untouched";
	int r = qpol_add_rule(p, name, value, err, sizeof(err));

	cr_assert_eq(r, 0, "rule_%s = %s: %d: %s", name, value, r, err);
}

/* Adding the rule fails with exactly this message, and adds nothing. */
static void add_bad_named(const char *name, const char *value, const char *want)
{
	struct qpol *p = pol("fr-1");
	char err[512] = "";
	int r;

	add_ok(p, "first", "allow list");
	r = qpol_add_rule(p, name, value, err, sizeof(err));
	cr_expect_eq(r, -QUAI_EFORMAT, "rule_%s = <%s> accepted: %d", name, value, r);
	cr_expect_str_eq(err, want, "rule_%s = <%s>", name, value);
	cr_expect_eq(qpol_nrules(p), 1);
	qpol_free(p);
}

static void add_bad(const char *value, const char *want)
{
	add_bad_named("r", value, want);
}

static char *format(const struct qpol *p)
{
	size_t n = qpol_format(p, NULL, 0);
	char *buf = malloc(n + 1);

	cr_assert_not_null(buf);
	cr_assert_eq(qpol_format(p, buf, n + 1), n);
	cr_assert_eq(strlen(buf), n);
	return buf;
}

/* A subject: an authenticated one when uid >= 0. */
struct who {
	struct qpol_subject s;
	uint32_t gids[4];
};

static void set_addr(struct qpol_subject *s, const char *addr)
{
	memset(&s->addr, 0, sizeof(s->addr));
	s->has_addr = addr != NULL;
	if (!addr)
		return;
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s->addr;

		a->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, addr, &a->sin6_addr), 1, "%s", addr);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&s->addr;

		a->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, addr, &a->sin_addr), 1, "%s", addr);
	}
}

static struct who user(const char *name, uint32_t uid, uint32_t gid, uint32_t gid2,
		       const char *addr)
{
	struct who w = {.s = {.authenticated = 1, .uid = uid, .user = name}};

	w.gids[w.s.ngids++] = gid;
	if (gid2 != UINT32_MAX)
		w.gids[w.s.ngids++] = gid2;
	set_addr(&w.s, addr);
	return w;
}

static struct who anonymous(const char *addr)
{
	struct who w = {.s = {.authenticated = 0}};

	set_addr(&w.s, addr);
	return w;
}

#define NOGID UINT32_MAX

struct expect {
	int allow;
	const char *rule;
	const char *why; /* NULL: "" (allowed); else a part of why */
};

static void decide(const struct qpol *p, struct who *w, int op, const char *dataset, int cls,
		   const char *zone, struct expect e)
{
	struct qpol_request rq = {op, dataset, cls, zone};
	struct qpol_decision d;
	int r;

	w->s.gids = w->gids;
	memset(&d, 'x', sizeof(d));
	r = qpol_decide(p, &w->s, &rq, &d);
	cr_expect_eq(r, d.allow, "returned %d, allow %d", r, d.allow);
	cr_expect_eq(d.allow, e.allow, "%s %s (uid %u): %s by %s: %s", qpol_op_name(op), dataset,
		     w->s.uid, d.allow ? "allowed" : "refused", d.rule, d.why);
	cr_expect_str_eq(d.rule, e.rule, "%s %s (uid %u): %s", qpol_op_name(op), dataset, w->s.uid,
			 d.why);
	if (e.why)
		cr_expect(strstr(d.why, e.why) != NULL, "%s %s (uid %u): '%s' lacks '%s'",
			  qpol_op_name(op), dataset, w->s.uid, d.why, e.why);
	else
		cr_expect_str_eq(d.why, "", "allowed with a why");
}

static struct expect allowed_by(const char *rule)
{
	return (struct expect){1, rule, NULL};
}

static struct expect refused_by(const char *rule, const char *why)
{
	return (struct expect){0, rule, why};
}

#define PUB QUAI_CLASS_PUBLIC
#define INT QUAI_CLASS_INTERNAL
#define SEN QUAI_CLASS_SENSITIVE

/* ------------------------------------------------------------------------
 * Building
 * ------------------------------------------------------------------------ */

Test(policy, a_new_policy_is_empty)
{
	struct qpol *p = pol("fr-1");
	char *text = format(p);

	cr_expect_eq(qpol_nrules(p), 0);
	cr_expect_eq(qpol_unauthenticated(p), 0);
	cr_expect_str_eq(qpol_zone(p), "fr-1");
	cr_expect_str_eq(text,
			 "# unauthenticated = no (default)\n"
			 "# zone_hosts = (default: none: sensitive data is streamed and pulled "
			 "to no host)\n"
			 "# no rule_ lines: every authenticated request will be refused\n");
	free(text);
	qpol_free(p);
	qpol_free(NULL);
}

Test(policy, op_names)
{
	cr_expect_str_eq(qpol_op_name(QPOL_LIST), "list");
	cr_expect_str_eq(qpol_op_name(QPOL_STREAM), "stream");
	cr_expect_str_eq(qpol_op_name(QPOL_PULL), "pull");
	cr_expect_str_eq(qpol_op_name(QPOL_PUSH), "push");
	cr_expect_str_eq(qpol_op_name(0), "?");
	cr_expect_str_eq(qpol_op_name(QPOL_PULL | QPOL_PUSH), "?");
}

Test(policy, rules_are_normalised)
{
	struct qpol *p = pol("fr-1");
	char err[256], *text;

	add_ok(p, "a",
	       "  allow \t read,list   users=root,uid:1002 groups=nogroup,gid:7 "
	       "classes=sensitive,public datasets=era5*,imagenet "
	       "hosts=10.1.0.0/16,::ffff:10.2.0.0/112,fd00::/8,10.3.0.1/32,::1  ");
	add_ok(p, "b", "deny read,write,list");
	add_ok(p, "c", "deny write users=* groups=*");
	add_ok(p, "d", "allow pull,stream,pull hosts=0.0.0.0/0,::/0");
	cr_assert_eq(qpol_set_zone_hosts(p, "10.1.0.0/16  fd00:1::/64,10.9.9.9", err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(qpol_set_unauthenticated(p, "public", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(qpol_nrules(p), 4);
	cr_expect_eq(qpol_unauthenticated(p), 1);
	text = format(p);
	cr_expect_str_eq(text, "unauthenticated = public\n"
			       "zone_hosts = 10.1.0.0/16,fd00:1::/64,10.9.9.9\n"
			       "rule_a = allow list,stream,pull users=root,uid:1002 "
			       "groups=nogroup,gid:7 classes=public,sensitive "
			       "datasets=era5*,imagenet "
			       "hosts=10.1.0.0/16,10.2.0.0/16,fd00::/8,10.3.0.1,::1\n"
			       "rule_b = deny all\n"
			       "rule_c = deny push users=* groups=*\n"
			       "rule_d = allow stream,pull hosts=0.0.0.0/0,::/0\n");
	free(text);
	cr_assert_eq(qpol_set_unauthenticated(p, "no", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(qpol_unauthenticated(p), 0);
	qpol_free(p);
}

/* What qpol_format writes reads back to the same policy. */
Test(policy, format_reads_back)
{
	struct qpol *p = pol("fr-1"), *q = pol("fr-1");
	char *a, *b, *line, *save = NULL, err[256];

	add_ok(p, "x", "allow read users=daemon,uid:5 classes=internal datasets=[a-c]?x*");
	add_ok(p, "y", "deny list,push groups=nogroup hosts=fd00::/8");
	cr_assert_eq(qpol_set_zone_hosts(p, "10.0.0.0/8", err, sizeof(err)), 0);
	a = format(p);
	b = strdup(a);
	for (line = strtok_r(b, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strstr(line, " = ");

		if (line[0] == '#')
			continue;
		cr_assert_not_null(eq, "%s", line);
		*eq = '\0';
		if (strncmp(line, "rule_", 5) == 0)
			add_ok(q, line + 5, eq + 3);
		else if (strcmp(line, "zone_hosts") == 0)
			cr_assert_eq(qpol_set_zone_hosts(q, eq + 3, err, sizeof(err)), 0);
		else
			cr_assert_eq(qpol_set_unauthenticated(q, eq + 3, err, sizeof(err)), 0);
	}
	free(b);
	b = format(q);
	cr_expect_str_eq(a, b);
	free(a);
	free(b);
	qpol_free(p);
	qpol_free(q);
}

Test(policy, format_truncates_and_says_the_length)
{
	struct qpol *p = pol("fr-1");
	char buf[16];
	size_t n;

	add_ok(p, "a", "allow all");
	n = qpol_format(p, NULL, 0);
	memset(buf, 'x', sizeof(buf));
	cr_expect_eq(qpol_format(p, buf, sizeof(buf)), n);
	cr_expect_str_eq(buf, "# unauthenticat");
	cr_expect_eq(qpol_format(p, buf, 1), n);
	cr_expect_str_eq(buf, "");
	qpol_free(p);
}

/* ------------------------------------------------------------------------
 * Parse errors, each with its message
 * ------------------------------------------------------------------------ */

Test(policy, rule_names)
{
	char long_name[70];

	add_bad_named("", "allow all", "a rule needs a name (rule_NAME, e.g. rule_train_read)");
	add_bad_named("Bad-Name", "allow all",
		      "rule name 'Bad-Name': only a-z, 0-9 and _ are allowed");
	add_bad_named("a:b", "allow all", "rule name 'a:b': only a-z, 0-9 and _ are allowed");
	memset(long_name, 'n', 65);
	long_name[65] = '\0';
	add_bad_named(long_name, "allow all",
		      "rule name 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
		      "...' is longer than 64 bytes");
	add_bad_named("first", "deny all", "a rule named 'first' is already set");
	/* 64 bytes is fine. */
	long_name[64] = '\0';
	{
		struct qpol *p = pol("fr-1");

		add_ok(p, long_name, "allow all");
		qpol_free(p);
	}
}

Test(policy, action_and_ops_errors)
{
	add_bad("", "no value: expected allow|deny OPS [users=...] [groups=...] [classes=...] "
		    "[datasets=...] [hosts=...]");
	add_bad("   ", "no value: expected allow|deny OPS [users=...] [groups=...] [classes=...] "
		       "[datasets=...] [hosts=...]");
	add_bad("permit read", "'permit': a rule starts with allow or deny");
	add_bad("Allow read", "'Allow': a rule starts with allow or deny");
	add_bad("allowread", "'allowread': a rule starts with allow or deny");
	add_bad("allow", "ops: none after 'allow' (a comma list of list, stream, pull, push, read, "
			 "write, all)");
	add_bad("deny users=root", "ops: none after 'deny' (a comma list of list, stream, pull, "
				   "push, read, write, all)");
	add_bad("allow reed", "ops: 'reed' is not list, stream, pull, push, read, write or all");
	add_bad("allow read,Write", "ops: 'Write' is not list, stream, pull, push, read, write or "
				    "all");
	add_bad("allow read,,list", "ops: an empty entry in 'read,,list'");
	add_bad("allow read,", "ops: an empty entry in 'read,'");
	add_bad("allow ,read", "ops: an empty entry in ',read'");
}

Test(policy, condition_errors)
{
	add_bad("allow read foo",
		"'foo': expected KEY=VALUE, KEY one of users, groups, classes, datasets, hosts");
	add_bad("allow read list", "'list': expected KEY=VALUE, KEY one of users, groups, "
				   "classes, datasets, hosts");
	add_bad("allow read user=root", "'user=root': unknown condition (the conditions are "
					"users, groups, classes, datasets, hosts)");
	add_bad("allow read =root", "'=root': unknown condition (the conditions are users, "
				    "groups, classes, datasets, hosts)");
	add_bad("allow read users=root users=nobody",
		"'users=nobody': users given twice in one rule (put every value in one list)");
	add_bad("allow read hosts=::1 classes=public hosts=::1",
		"'hosts=::1': hosts given twice in one rule (put every value in one list)");
	add_bad("allow read users=", "users: an empty list (leave the condition out to match any)");
	add_bad("allow read groups=", "groups: an empty list (leave the condition out to match "
				      "any)");
	add_bad("allow read classes=", "classes: an empty list (leave the condition out to match "
				       "any)");
	add_bad("allow read datasets=", "datasets: an empty list (leave the condition out to "
					"match any)");
	add_bad("allow read hosts=", "hosts: an empty list (leave the condition out to match "
				     "any)");
}

Test(policy, user_and_group_errors)
{
	add_bad("allow read users=root,,nobody", "users: an empty entry in 'root,,nobody'");
	add_bad("allow read users=root,", "users: an empty entry in 'root,'");
	add_bad("allow read groups=,nogroup", "groups: an empty entry in ',nogroup'");
	add_bad("allow read users=no_such_user_q", "users: no user 'no_such_user_q' on this host");
	add_bad("allow read groups=train", "groups: no group 'train' on this host");
	add_bad("allow read groups=nogroup,train_q", "groups: no group 'train_q' on this host");
	/* Users are not groups. */
	add_bad("allow read users=nogroup", "users: no user 'nogroup' on this host");
	add_bad("allow read users=uid:x",
		"users: 'uid:x': expected uid:N, N a number from 0 to 4294967294");
	add_bad("allow read users=uid:", "users: 'uid:': expected uid:N, N a number from 0 to "
					 "4294967294");
	add_bad("allow read users=uid:4294967295",
		"users: 'uid:4294967295': expected uid:N, N a number from 0 to 4294967294");
	add_bad("allow read users=uid:99999999999999999999",
		"users: 'uid:99999999999999999999': expected uid:N, N a number from 0 to "
		"4294967294");
	add_bad("allow read groups=gid:-1",
		"groups: 'gid:-1': expected gid:N, N a number from 0 to 4294967294");
	add_bad("allow read groups=uid:1", "groups: no group 'uid:1' on this host");
	add_bad("allow read users=*,root", "users: '*' (every user) stands alone, not in a list");
	add_bad("allow read groups=nogroup,*",
		"groups: '*' (every group) stands alone, not in a list");
}

Test(policy, class_dataset_and_host_errors)
{
	add_bad("allow read classes=secret", "classes: 'secret' is not public, internal or "
					     "sensitive");
	add_bad("allow read classes=public,Internal",
		"classes: 'Internal' is not public, internal or sensitive");
	add_bad("allow read classes=public,,internal",
		"classes: an empty entry in 'public,,internal'");
	add_bad("allow read datasets=a/b", "datasets: 'a/b' can match nothing: dataset names "
					   "hold no '/'");
	add_bad("allow read datasets=era5,", "datasets: an empty entry in 'era5,'");
	add_bad("allow read datasets=[[:alpha:]]*",
		"datasets: '[[:alpha:]]*': character classes ([:alpha:], [=a=], [.a.]) are not "
		"supported");
	add_bad("allow read hosts=10.0.0.0/33",
		"hosts: '10.0.0.0/33' is not an address or prefix (an IPv4 prefix length is 0 to "
		"32)");
	add_bad("allow read hosts=fd00::/129",
		"hosts: 'fd00::/129' is not an address or prefix (an IPv6 prefix length is 0 to "
		"128)");
	add_bad("allow read hosts=10.0.0.0/",
		"hosts: '10.0.0.0/' is not an address or prefix (the prefix length is a number "
		"after '/')");
	add_bad("allow read hosts=10.0.0.0/+8",
		"hosts: '10.0.0.0/+8' is not an address or prefix (the prefix length is a number "
		"after '/')");
	add_bad("allow read hosts=10.0.0.0/0008",
		"hosts: '10.0.0.0/0008' is not an address or prefix (the prefix length is a "
		"number after '/')");
	add_bad("allow read hosts=10.1.2.3/16", "hosts: '10.1.2.3/16' has bits set after its /16 "
						"prefix (the network is written with them zero)");
	add_bad("allow read hosts=fd00::1/64", "hosts: 'fd00::1/64' has bits set after its /64 "
					       "prefix (the network is written with them zero)");
	add_bad("allow read hosts=10.1", "hosts: '10.1' is not an address or prefix");
	add_bad("allow read hosts=io-node-3", "hosts: 'io-node-3' is not an address or prefix");
	add_bad("allow read hosts=fe80::1%eth0", "hosts: 'fe80::1%eth0' is not an address or "
						 "prefix");
	add_bad("allow read hosts=10.0.0.1,,10.0.0.2", "hosts: an empty entry in "
						       "'10.0.0.1,,10.0.0.2'");
}

Test(policy, messages_show_values_safely)
{
	char value[300];

	snprintf(value, sizeof(value), "allow read datasets=%0200d/", 7);
	add_bad(value, "datasets: '000000000000000000000000000000000000000000000000000000000000"
		       "0000...' can match nothing: dataset names hold no '/'");
	add_bad("allow re\x01\x7f", "ops: 're?"
				    "?' is not list, stream, pull, push, read, write or "
				    "all");
}

Test(policy, zone_hosts_and_unauthenticated_errors)
{
	struct qpol *p = pol("fr-1");
	char err[512], *text;
	static const struct {
		const char *value, *want;
	} bad[] = {
	    {"", "zone_hosts: no address or prefix"},
	    {"  ", "zone_hosts: no address or prefix"},
	    {",", "zone_hosts: an empty entry in ','"},
	    {"10.0.0.1,,10.0.0.2", "zone_hosts: an empty entry in '10.0.0.1,,10.0.0.2'"},
	    {"10.0.0.1 , ,10.0.0.2", "zone_hosts: an empty entry in '10.0.0.1 , ,10.0.0.2'"},
	    {"10.0.0.1,", "zone_hosts: an empty entry in '10.0.0.1,'"},
	    {",10.0.0.1", "zone_hosts: an empty entry in ',10.0.0.1'"},
	    {"10.0.0.1 io-node-3", "zone_hosts: 'io-node-3' is not an address or prefix"},
	    {"10.0.0.0/33", "zone_hosts: '10.0.0.0/33' is not an address or prefix (an IPv4 "
			    "prefix length is 0 to 32)"},
	};

	cr_assert_eq(qpol_set_zone_hosts(p, "10.1.0.0/16", err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_expect_eq(qpol_set_zone_hosts(p, bad[i].value, err, sizeof(err)), -QUAI_EFORMAT,
			     "<%s>", bad[i].value);
		cr_expect_str_eq(err, bad[i].want, "<%s>", bad[i].value);
	}
	/* Blanks and commas, alone or together. */
	cr_expect_eq(
	    qpol_set_zone_hosts(p, " 10.0.0.1 ,10.0.0.2\t10.0.0.3, 10.0.0.4 ", err, sizeof(err)), 0,
	    "%s", err);
	/* A refused list leaves the last good one. */
	cr_expect_eq(qpol_set_zone_hosts(p, "nope", err, sizeof(err)), -QUAI_EFORMAT);
	text = format(p);
	cr_expect(strstr(text, "\nzone_hosts = 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4\n") != NULL,
		  "%s", text);
	free(text);

	cr_expect_eq(qpol_set_unauthenticated(p, "yes", err, sizeof(err)), -QUAI_EFORMAT);
	cr_expect_str_eq(err, "'yes': expected no (every client authenticates) or public "
			      "(clients without a credential may read public datasets)");
	cr_expect_eq(qpol_set_unauthenticated(p, "Public", err, sizeof(err)), -QUAI_EFORMAT);
	cr_expect_eq(qpol_unauthenticated(p), 0);
	qpol_free(p);
}

/* ------------------------------------------------------------------------
 * Decisions
 * ------------------------------------------------------------------------ */

/* A site in zone fr-1: root does anything; nobody may not push; the
 * nogroup group reads public and internal data; daemon pulls era5* and
 * cmip? from the site network; everyone may list. */
static struct qpol *site(void)
{
	struct qpol *p = pol("fr-1");
	char err[256];

	add_ok(p, "root_all", "allow all users=root");
	add_ok(p, "deny_nobody_push", "deny push users=nobody");
	add_ok(p, "nogroup_read", "allow read groups=nogroup classes=public,internal");
	add_ok(p, "daemon_era", "allow pull users=uid:1 datasets=era5*,cmip? hosts=10.1.0.0/16");
	add_ok(p, "any_list", "allow list");
	cr_assert_eq(qpol_set_zone_hosts(p, "10.1.0.0/16, fd00:1::/64", err, sizeof(err)), 0);
	return p;
}

Test(policy, the_decision_matrix)
{
	struct qpol *p = site();
	struct who root = user("root", 0, 0, NOGID, "10.1.0.2");
	struct who nobody = user("nobody", 65534, 65534, NOGID, "10.1.0.3");
	struct who daemon = user("daemon", 1, 1, NOGID, "10.1.0.4");
	struct who daemon_out = user("daemon", 1, 1, NOGID, "10.2.0.4");
	struct who alice = user("alice", 1001, 1001, 65534, "10.1.0.7");
	struct who bob = user("bob", 1002, 1002, NOGID, "10.1.0.8");

	/* root: everything in its zone. */
	decide(p, &root, QPOL_LIST, "", 0, NULL, allowed_by("root_all"));
	decide(p, &root, QPOL_STREAM, "era5", SEN, "fr-1", allowed_by("root_all"));
	decide(p, &root, QPOL_PULL, "era5", INT, "de-1", allowed_by("root_all"));
	decide(p, &root, QPOL_PUSH, "new", PUB, "fr-1", allowed_by("root_all"));

	/* nobody is in nogroup: reads public and internal, not sensitive;
	 * never pushes. */
	decide(p, &nobody, QPOL_STREAM, "imagenet", PUB, "fr-1", allowed_by("nogroup_read"));
	decide(p, &nobody, QPOL_PULL, "era5", INT, "fr-1", allowed_by("nogroup_read"));
	decide(p, &nobody, QPOL_PULL, "era5", SEN, "fr-1",
	       refused_by("default", "no rule allows user nobody (uid 65534, from 10.1.0.3) to "
				     "pull dataset era5 (sensitive, zone fr-1)"));
	decide(p, &nobody, QPOL_PUSH, "era5", INT, "fr-1",
	       refused_by("deny_nobody_push",
			  "rule deny_nobody_push denies user nobody (uid 65534) push of dataset "
			  "era5 (internal)"));
	decide(p, &nobody, QPOL_LIST, "", 0, NULL, allowed_by("any_list"));
	decide(p, &nobody, QPOL_LIST, "secret", SEN, "fr-1", allowed_by("any_list"));

	/* alice: nogroup as a supplementary group. */
	decide(p, &alice, QPOL_STREAM, "era5", INT, "fr-1", allowed_by("nogroup_read"));
	decide(p, &alice, QPOL_PUSH, "era5", INT, "fr-1",
	       refused_by("default", "no rule allows user alice (uid 1001, from 10.1.0.7) to "
				     "push dataset era5 (internal, zone fr-1): add a rule_NAME = "
				     "allow push ... line to quaid's configuration"));

	/* bob: only listing. */
	decide(p, &bob, QPOL_LIST, "", 0, NULL, allowed_by("any_list"));
	decide(p, &bob, QPOL_LIST, "era5", SEN, "fr-1", allowed_by("any_list"));
	decide(p, &bob, QPOL_STREAM, "imagenet", PUB, "fr-1",
	       refused_by("default", "no rule allows user bob (uid 1002, from 10.1.0.8) to "
				     "stream dataset imagenet (public, zone fr-1): add a "
				     "rule_NAME = allow stream ... line to quaid's "
				     "configuration"));

	/* daemon: pulls era5* and cmip? only, only from 10.1/16. */
	decide(p, &daemon, QPOL_PULL, "era5", INT, "fr-1", allowed_by("daemon_era"));
	decide(p, &daemon, QPOL_PULL, "era5-daily", PUB, "fr-1", allowed_by("daemon_era"));
	decide(p, &daemon, QPOL_PULL, "cmip6", SEN, "fr-1", allowed_by("daemon_era"));
	decide(p, &daemon, QPOL_PULL, "cmip66", INT, "fr-1",
	       refused_by("default", "to pull dataset cmip66 (internal, zone fr-1)"));
	decide(p, &daemon, QPOL_PULL, "xera5", INT, "fr-1", refused_by("default", "xera5"));
	decide(p, &daemon, QPOL_STREAM, "era5", INT, "fr-1",
	       refused_by("default", "allow stream ..."));
	decide(p, &daemon_out, QPOL_PULL, "era5", INT, "fr-1",
	       refused_by("default", "(uid 1, from 10.2.0.4) to pull dataset era5"));
	qpol_free(p);
}

Test(policy, a_missing_class_is_internal_and_an_unknown_one_sensitive)
{
	struct qpol *p = pol("fr-1");
	struct who w = user("root", 0, 0, NOGID, "10.9.0.1");

	add_ok(p, "int", "allow pull classes=internal");
	decide(p, &w, QPOL_PULL, "era5", 0, "fr-1", allowed_by("int"));
	decide(p, &w, QPOL_PULL, "era5", 9, "fr-1", refused_by("sovereign:hosts", "sensitive"));
	decide(p, &w, QPOL_PULL, "era5", -1, "de-1", refused_by("sovereign:zone", "sensitive"));
	qpol_free(p);
}

Test(policy, users_and_groups_in_every_form)
{
	struct qpol *p = pol("fr-1");
	struct who alice = user("alice", 1001, 1001, 65534, NULL);
	struct who carol = user(NULL, 1003, 1003, NOGID, NULL);
	struct who daemon = user("daemon", 1, 1, NOGID, NULL);

	add_ok(p, "by_uid", "allow push users=uid:1003");
	add_ok(p, "by_gid", "allow stream groups=gid:65534");
	add_ok(p, "either", "allow pull users=uid:1003 groups=daemon");
	add_ok(p, "anyone", "allow list users=*");
	add_ok(p, "any_group", "deny push groups=*");
	decide(p, &carol, QPOL_PUSH, "d", INT, "fr-1", allowed_by("by_uid"));
	decide(p, &alice, QPOL_PUSH, "d", INT, "fr-1",
	       refused_by("any_group", "rule any_group denies user alice (uid 1001) push of "
				       "dataset d (internal)"));
	decide(p, &alice, QPOL_STREAM, "d", INT, "fr-1", allowed_by("by_gid"));
	decide(p, &carol, QPOL_STREAM, "d", INT, "fr-1",
	       refused_by("default", "no rule allows uid 1003 to stream dataset d"));
	decide(p, &carol, QPOL_PULL, "d", INT, "fr-1", allowed_by("either"));
	decide(p, &daemon, QPOL_PULL, "d", INT, "fr-1", allowed_by("either"));
	decide(p, &alice, QPOL_PULL, "d", INT, "fr-1", refused_by("default", "user alice"));
	decide(p, &carol, QPOL_LIST, "", 0, NULL, allowed_by("anyone"));
	/* A subject with no groups at all. */
	carol.s.ngids = 0;
	decide(p, &carol, QPOL_PUSH, "d", INT, "fr-1", allowed_by("by_uid"));
	qpol_free(p);
}

Test(policy, names_resolve_to_ids)
{
	struct qpol *p = pol("fr-1");
	struct who root_by_id = user(NULL, 0, 0, NOGID, NULL);
	struct who in_nogroup = user(NULL, 4242, 4242, 65534, NULL);

	add_ok(p, "r", "allow pull users=root");
	add_ok(p, "g", "allow push groups=nogroup");
	decide(p, &root_by_id, QPOL_PULL, "d", INT, "fr-1", allowed_by("r"));
	decide(p, &in_nogroup, QPOL_PUSH, "d", INT, "fr-1", allowed_by("g"));
	decide(p, &in_nogroup, QPOL_PULL, "d", INT, "fr-1",
	       refused_by("default", "no rule allows uid 4242 to pull"));
	qpol_free(p);
}

Test(policy, the_first_matching_rule_decides)
{
	struct qpol *p = pol("fr-1"), *q = pol("fr-1");
	struct who root = user("root", 0, 0, NOGID, NULL);

	add_ok(p, "yes", "allow pull users=root");
	add_ok(p, "no", "deny pull users=root");
	add_ok(q, "no", "deny pull users=root");
	add_ok(q, "yes", "allow pull users=root");
	decide(p, &root, QPOL_PULL, "d", INT, "fr-1", allowed_by("yes"));
	decide(q, &root, QPOL_PULL, "d", INT, "fr-1",
	       refused_by("no", "rule no denies user root (uid 0) pull of dataset d (internal)"));
	/* A rule that does not match is passed over. */
	decide(q, &root, QPOL_STREAM, "d", INT, "fr-1", refused_by("default", "stream"));
	qpol_free(p);
	qpol_free(q);
}

Test(policy, classes_and_ops)
{
	static const int ops[] = {QPOL_LIST, QPOL_STREAM, QPOL_PULL, QPOL_PUSH};
	static const char *const words[] = {"list", "stream", "pull", "push",
					    "read", "write",  "all"};
	static const int masks[] = {1, 2, 4, 8, 6, 8, 15};
	struct who root = user("root", 0, 0, NOGID, "10.1.0.1");

	for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
		for (int cls = PUB; cls <= SEN; cls++) {
			struct qpol *p = pol("fr-1");
			char value[64], err[128];

			snprintf(value, sizeof(value), "allow %s classes=%s", words[w],
				 quai_class_name(cls));
			add_ok(p, "r", value);
			cr_assert_eq(qpol_set_zone_hosts(p, "10.1.0.0/16", err, sizeof(err)), 0);
			for (size_t o = 0; o < 4; o++) {
				for (int dc = PUB; dc <= SEN; dc++) {
					bool yes = (masks[w] & ops[o]) && dc == cls;

					decide(p, &root, ops[o], "ds", dc, "fr-1",
					       yes ? allowed_by("r")
						   : refused_by("default", "no rule allows"));
				}
				/* No dataset: classes= does not restrict. */
				if (ops[o] == QPOL_LIST)
					decide(p, &root, ops[o], "", 0, NULL,
					       (masks[w] & QPOL_LIST)
						   ? allowed_by("r")
						   : refused_by("default", "to list:"));
			}
			qpol_free(p);
		}
	}
}

Test(policy, listing_and_dataset_conditions)
{
	struct qpol *p = pol("fr-1");
	struct who bob = user("bob", 1002, 1002, NOGID, NULL);

	add_ok(p, "hide", "deny list datasets=secret*");
	add_ok(p, "hide_sensitive", "deny list classes=sensitive");
	add_ok(p, "era_only", "allow list datasets=era5*");
	/* The LIST request itself: the deny rules are about datasets, and
	 * the allow rule lets it through. */
	decide(p, &bob, QPOL_LIST, "", 0, NULL, allowed_by("era_only"));
	/* Then each dataset on its own. */
	decide(p, &bob, QPOL_LIST, "era5", INT, "fr-1", allowed_by("era_only"));
	decide(p, &bob, QPOL_LIST, "secret1", INT, "fr-1",
	       refused_by("hide", "rule hide denies user bob (uid 1002) list of dataset secret1 "
				  "(internal)"));
	decide(p, &bob, QPOL_LIST, "era5s", SEN, "fr-1",
	       refused_by("hide_sensitive", "list of dataset era5s (sensitive)"));
	decide(p, &bob, QPOL_LIST, "imagenet", PUB, "fr-1",
	       refused_by("default", "no rule allows user bob (uid 1002) to list dataset "
				     "imagenet (public, zone fr-1): add a rule_NAME = allow list "
				     "... line to quaid's configuration"));
	qpol_free(p);

	/* A deny rule about everyone and every dataset denies listing. */
	p = pol("fr-1");
	add_ok(p, "none", "deny list");
	add_ok(p, "all", "allow list");
	decide(p, &bob, QPOL_LIST, "", 0, NULL,
	       refused_by("none", "rule none denies user bob (uid 1002) list"));
	qpol_free(p);
}

Test(policy, hosts_v4_v6_and_v4_mapped)
{
	struct qpol *p = pol("fr-1");
	struct who w;
	static const struct {
		const char *addr;
		const char *rule;
	} cases[] = {
	    {"10.1.2.3", "v4net"},
	    {"10.1.255.255", "v4net"},
	    {"10.2.0.1", "v4one"},
	    {"::ffff:10.1.2.3", "v4net"},
	    {"::ffff:10.2.0.1", "v4one"},
	    {"fd00:1::5", "v6net"},
	    {"fd00:1:0:0:ffff::1", "v6net"},
	    {"fd00:2::5", "mapped"},
	    {"10.3.0.1", "mapped"},
	    {"::ffff:10.3.255.1", "mapped"},
	    {"::1", "v6one"},
	    {"10.0.0.1", "default"},
	    {"10.2.0.2", "default"},
	    {"fd00:3::1", "default"},
	    {"::10.1.2.3", "default"}, /* IPv4-compatible, not mapped */
	    {NULL, "default"},
	};

	add_ok(p, "v4net", "allow pull hosts=10.1.0.0/16");
	add_ok(p, "v4one", "allow pull hosts=10.2.0.1");
	add_ok(p, "v6net", "allow pull hosts=fd00:1::/64");
	add_ok(p, "v6one", "allow pull hosts=::1/128");
	add_ok(p, "mapped", "allow pull hosts=::ffff:10.3.0.0/112,fd00:2::/32");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		w = user("root", 0, 0, NOGID, cases[i].addr);
		if (strcmp(cases[i].rule, "default") == 0)
			decide(p, &w, QPOL_PULL, "d", INT, "fr-1",
			       refused_by("default", "no rule allows"));
		else
			decide(p, &w, QPOL_PULL, "d", INT, "fr-1", allowed_by(cases[i].rule));
	}
	/* ::ffff:0.0.0.0/96 is every IPv4 address. */
	qpol_free(p);
	p = pol("fr-1");
	add_ok(p, "any_v4", "allow pull hosts=::ffff:0.0.0.0/96");
	w = user("root", 0, 0, NOGID, "192.0.2.1");
	decide(p, &w, QPOL_PULL, "d", INT, "fr-1", allowed_by("any_v4"));
	w = user("root", 0, 0, NOGID, "2001:db8::1");
	decide(p, &w, QPOL_PULL, "d", INT, "fr-1", refused_by("default", "from 2001:db8::1"));
	qpol_free(p);
}

Test(policy, odd_prefix_lengths)
{
	struct qpol *p = pol("fr-1");
	struct who w;

	add_ok(p, "r", "allow pull hosts=10.1.128.0/17,fd00:0:0:8000::/49");
	w = user("root", 0, 0, NOGID, "10.1.200.1");
	decide(p, &w, QPOL_PULL, "d", INT, "fr-1", allowed_by("r"));
	w = user("root", 0, 0, NOGID, "10.1.127.1");
	decide(p, &w, QPOL_PULL, "d", INT, "fr-1", refused_by("default", "10.1.127.1"));
	w = user("root", 0, 0, NOGID, "fd00:0:0:c000::1");
	decide(p, &w, QPOL_PULL, "d", INT, "fr-1", allowed_by("r"));
	w = user("root", 0, 0, NOGID, "fd00:0:0:7fff::1");
	decide(p, &w, QPOL_PULL, "d", INT, "fr-1", refused_by("default", "fd00:0:0:7fff::1"));
	qpol_free(p);
}

/* Dataset patterns match as fnmatch(3) does. */
Test(policy, dataset_patterns_match_as_fnmatch)
{
	static const char *const pats[] = {
	    "*",     "era5*", "era?",	"[a-c]*", "[!a-c]*", "*.v[0-9]", "\\*x",   "a*b*c",
	    "[]a]x", "[",     "a[",	"*[",	  "[!]]",    "e\\ra5",	 "*a*a*a", "[a\\]]*",
	    "?",     "??*",   "[z-a]*", "era5",	  "*5",	     "[^e]*",
	};
	static const char *const names[] = {
	    "era5", "era5-daily", "era", "abc",	  "dset", "b",	"*x",	"aXbYc", "ac",
	    "]x",   "ax",	  "[",	 "a[",	  "zz[",  "]",	"x.v3", "aaa",	 "era5.v9",
	    "e",    "aaaa",	  "x",	 "\\ra5", "ERA5", "a]", "za",
	};
	struct who w = user("root", 0, 0, NOGID, NULL);

	for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
		struct qpol *p = pol("fr-1");
		char value[128];

		snprintf(value, sizeof(value), "allow pull datasets=%s", pats[i]);
		add_ok(p, "r", value);
		for (size_t j = 0; j < sizeof(names) / sizeof(names[0]); j++) {
			bool want = fnmatch(pats[i], names[j], 0) == 0;

			decide(p, &w, QPOL_PULL, names[j], INT, "fr-1",
			       want ? allowed_by("r") : refused_by("default", names[j]));
		}
		qpol_free(p);
	}
}

/* ------------------------------------------------------------------------
 * The fixed checks
 * ------------------------------------------------------------------------ */

Test(policy, unauthenticated_off)
{
	struct qpol *p = pol("fr-1");
	struct who anon = anonymous("10.1.0.9");
	const char *why = "authentication required: this quaid accepts MUNGE credentials only; "
			  "is munged running on the client?";

	/* Even "allow all" with no condition is for authenticated users. */
	add_ok(p, "everyone", "allow all");
	decide(p, &anon, QPOL_LIST, "", 0, NULL, refused_by("auth:required", why));
	decide(p, &anon, QPOL_STREAM, "imagenet", PUB, "fr-1", refused_by("auth:required", why));
	decide(p, &anon, QPOL_PULL, "imagenet", PUB, "fr-1", refused_by("auth:required", why));
	decide(p, &anon, QPOL_PUSH, "imagenet", PUB, "fr-1", refused_by("auth:required", why));
	qpol_free(p);
}

Test(policy, unauthenticated_public)
{
	struct qpol *p = pol("fr-1");
	struct who anon = anonymous(NULL);
	char err[128];

	cr_assert_eq(qpol_set_unauthenticated(p, "public", err, sizeof(err)), 0);
	add_ok(p, "everyone", "allow all");
	decide(p, &anon, QPOL_LIST, "", 0, NULL, allowed_by("auth:public"));
	decide(p, &anon, QPOL_LIST, "imagenet", PUB, "fr-1", allowed_by("auth:public"));
	decide(p, &anon, QPOL_STREAM, "imagenet", PUB, "fr-1", allowed_by("auth:public"));
	decide(p, &anon, QPOL_PULL, "imagenet", PUB, "de-1", allowed_by("auth:public"));
	decide(p, &anon, QPOL_PULL, "era5", INT, "fr-1",
	       refused_by("auth:required",
			  "authentication required: quaid allows unauthenticated clients only to "
			  "read public datasets (unauthenticated = public), and dataset era5 is "
			  "internal"));
	decide(p, &anon, QPOL_LIST, "era5", SEN, "fr-1",
	       refused_by("auth:required", "and dataset era5 is sensitive"));
	decide(p, &anon, QPOL_STREAM, "era5", 0, "fr-1",
	       refused_by("auth:required", "and dataset era5 is internal"));
	decide(p, &anon, QPOL_PUSH, "imagenet", PUB, "fr-1",
	       refused_by("auth:required",
			  "authentication required: quaid allows unauthenticated clients only to "
			  "read public datasets (unauthenticated = public), and push writes"));
	decide(p, &anon, QPOL_PUSH, "", 0, NULL, refused_by("auth:required", "push writes"));
	qpol_free(p);
}

Test(policy, sovereign_zone_beats_allow_all)
{
	struct qpol *p = pol("fr-1");
	struct who root = user("root", 0, 0, NOGID, "10.1.0.2");
	char err[128];
	const char *why = "dataset era5 is sensitive, of zone de-1; this quaid is in zone fr-1, "
			  "and sensitive data is served and accepted only in its own zone";

	add_ok(p, "everything", "allow all");
	cr_assert_eq(qpol_set_zone_hosts(p, "10.1.0.0/16", err, sizeof(err)), 0);
	for (int op = QPOL_LIST; op <= QPOL_PUSH; op <<= 1)
		decide(p, &root, op, "era5", SEN, "de-1", refused_by("sovereign:zone", why));
	decide(p, &root, QPOL_PULL, "era5", SEN, NULL,
	       refused_by("sovereign:zone", "dataset era5 is sensitive, of zone none;"));
	/* Other classes cross zones. */
	decide(p, &root, QPOL_PULL, "era5", INT, "de-1", allowed_by("everything"));
	decide(p, &root, QPOL_PUSH, "era5", PUB, "de-1", allowed_by("everything"));
	decide(p, &root, QPOL_PULL, "era5", SEN, "fr-1", allowed_by("everything"));
	qpol_free(p);
}

Test(policy, sovereign_hosts_beats_allow_all)
{
	struct qpol *p = pol("fr-1");
	struct who in = user("root", 0, 0, NOGID, "10.1.0.2");
	struct who in6 = user("root", 0, 0, NOGID, "fd00:1::2");
	struct who mapped = user("root", 0, 0, NOGID, "::ffff:10.1.0.2");
	struct who out = user("root", 0, 0, NOGID, "10.2.0.7");
	struct who nowhere = user("root", 0, 0, NOGID, NULL);
	char err[128];

	add_ok(p, "everything", "allow all");
	/* No zone hosts: sensitive data goes nowhere. */
	decide(p, &in, QPOL_STREAM, "era5", SEN, "fr-1",
	       refused_by("sovereign:hosts",
			  "dataset era5 is sensitive (zone fr-1): host 10.1.0.2 is not one of "
			  "zone fr-1's hosts: none are declared (zone_hosts in quaid's "
			  "configuration)"));
	cr_assert_eq(qpol_set_zone_hosts(p, "10.1.0.0/16 fd00:1::/64", err, sizeof(err)), 0);
	decide(p, &in, QPOL_STREAM, "era5", SEN, "fr-1", allowed_by("everything"));
	decide(p, &in6, QPOL_PULL, "era5", SEN, "fr-1", allowed_by("everything"));
	decide(p, &mapped, QPOL_PULL, "era5", SEN, "fr-1", allowed_by("everything"));
	decide(p, &out, QPOL_STREAM, "era5", SEN, "fr-1",
	       refused_by("sovereign:hosts",
			  "dataset era5 is sensitive (zone fr-1): host 10.2.0.7 is not one of "
			  "zone fr-1's hosts (zone_hosts in quaid's configuration)"));
	decide(p, &out, QPOL_PULL, "era5", SEN, "fr-1", refused_by("sovereign:hosts", "10.2.0.7"));
	decide(p, &nowhere, QPOL_PULL, "era5", SEN, "fr-1",
	       refused_by("sovereign:hosts", "dataset era5 is sensitive (zone fr-1): the "
					     "client's credential names no host address, so it "
					     "cannot be one of zone fr-1's hosts"));
	/* Listing and pushing sensitive data of the zone are the rules'
	 * to decide, from anywhere. */
	decide(p, &out, QPOL_LIST, "era5", SEN, "fr-1", allowed_by("everything"));
	decide(p, &out, QPOL_PUSH, "era5", SEN, "fr-1", allowed_by("everything"));
	/* Other classes go anywhere the rules allow. */
	decide(p, &out, QPOL_STREAM, "era5", INT, "fr-1", allowed_by("everything"));
	qpol_free(p);
}

Test(policy, a_policy_without_a_zone_refuses_sensitive_data)
{
	struct qpol *p = qpol_new("");
	struct who root = user("root", 0, 0, NOGID, "10.1.0.2");

	cr_assert_not_null(p);
	cr_expect_str_eq(qpol_zone(p), "");
	add_ok(p, "everything", "allow all");
	decide(p, &root, QPOL_PUSH, "era5", SEN, "",
	       refused_by("sovereign:zone", "dataset era5 is sensitive, of zone ; this quaid has "
					    "no valid zone, so it serves and accepts no "
					    "sensitive data"));
	decide(p, &root, QPOL_PUSH, "era5", INT, "", allowed_by("everything"));
	cr_expect_eq(qpol_set_zone(p, "fr-1"), 0);
	cr_expect_str_eq(qpol_zone(p), "fr-1");
	decide(p, &root, QPOL_PUSH, "era5", SEN, "fr-1", allowed_by("everything"));
	cr_expect_eq(qpol_set_zone(p, ".."), -EINVAL);
	cr_expect_str_eq(qpol_zone(p), "");
	qpol_free(p);
	p = qpol_new(NULL);
	cr_assert_not_null(p);
	cr_expect_str_eq(qpol_zone(p), "");
	qpol_free(p);
}

Test(policy, unknown_operations_are_refused)
{
	struct qpol *p = pol("fr-1");
	struct who root = user("root", 0, 0, NOGID, NULL);

	add_ok(p, "everything", "allow all");
	decide(p, &root, 0, "d", INT, "fr-1", refused_by("default", "unknown operation 0"));
	decide(p, &root, QPOL_PULL | QPOL_PUSH, "d", INT, "fr-1",
	       refused_by("default", "unknown operation 12"));
	qpol_free(p);
}

Test(policy, messages_about_clients_are_printable)
{
	struct qpol *p = pol("fr-1");
	struct who w = user("ev\nil", 5, 5, NOGID, NULL);

	decide(p, &w, QPOL_PULL, "x\x1b[2J", INT, "fr-1",
	       refused_by("default", "no rule allows user ev?il (uid 5) to pull dataset x?[2J "
				     "(internal, zone fr-1)"));
	qpol_free(p);
}

/* Deciding is pure: many threads over one policy agree with one. */
struct race {
	const struct qpol *p;
	int wrong;
};

static void *race_main(void *arg)
{
	struct race *r = arg;

	for (int i = 0; i < 20000; i++) {
		uint32_t gids[] = {(uint32_t)(i % 3 ? 1 : 65534)};
		struct qpol_subject s = {
		    .authenticated = 1, .uid = (uint32_t)i % 5, .gids = gids, .ngids = 1};
		struct qpol_request rq = {QPOL_PULL, i % 2 ? "era5" : "other", INT, "fr-1"};
		struct qpol_decision d;
		int want = s.uid == 0 || (gids[0] == 1 && i % 2);

		if (qpol_decide(r->p, &s, &rq, &d) != want)
			r->wrong++;
	}
	return NULL;
}

Test(policy, deciding_from_many_threads)
{
	struct qpol *p = pol("fr-1");
	pthread_t t[4];
	struct race r[4];

	add_ok(p, "root", "allow all users=root");
	add_ok(p, "daemon", "allow pull groups=daemon datasets=era5");
	for (int i = 0; i < 4; i++) {
		r[i] = (struct race){p, 0};
		cr_assert_eq(pthread_create(&t[i], NULL, race_main, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_expect_eq(r[i].wrong, 0);
	}
	qpol_free(p);
}
