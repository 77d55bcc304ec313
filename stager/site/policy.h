/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid's data policy (docs/SECURITY.md, docs/quaid.md "Access policy"):
 * who may list, stream, pull or push which datasets, from which hosts, and
 * the sovereignty rules no configuration can loosen. Private to the
 * library.
 *
 * A policy is built from quaid's configuration: the zone it serves, the
 * hosts in that zone (zone_hosts), whether unauthenticated clients may
 * read public datasets (unauthenticated), and rules, each a line
 *
 *     rule_NAME = allow|deny OPS [users=U,...] [groups=G,...]
 *                 [classes=C,...] [datasets=GLOB,...] [hosts=NET,...]
 *
 * OPS: a comma list of list, stream, pull, push, read (= stream,pull),
 * write (= push), all. users/groups: names, or uid:N / gid:N, or "*"
 * (omitted: any authenticated user). classes: public, internal,
 * sensitive (omitted: all). datasets: fnmatch(3) globs on the dataset
 * name (omitted: all). hosts: IPv4/IPv6 addresses or CIDR prefixes
 * matched against the authenticated origin address of the client
 * (omitted: any host). Rules are tried in file order; the first whose
 * conditions all hold decides. None matching: refused ("default").
 *
 * Deciding is pure (qpol_decide): names are resolved to ids when the
 * policy is built, so a decision does no I/O and takes no lock.
 */
#ifndef QUAI_STAGER_POLICY_H
#define QUAI_STAGER_POLICY_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

enum qpol_op {
	QPOL_LIST = 1,	 /* LIST, MANIFEST (quai info), STAT */
	QPOL_STREAM = 2, /* a remote stream of batches */
	QPOL_PULL = 4,	 /* quai pull: the dataset's files to the client's disk */
	QPOL_PUSH = 8,	 /* quai push: a dataset written on the server */
};

/* "list", "stream", "pull", "push"; "?" otherwise. */
const char *qpol_op_name(int op);

struct qpol; /* opaque; immutable once built */

/* An empty policy for `zone` (a valid zone label): no rules, no zone
 * hosts, unauthenticated access off. Returns NULL on ENOMEM. A zone that
 * is not a valid label (NULL, "") leaves the policy without a zone: it
 * then refuses every sensitive dataset ("sovereign:zone"). */
struct qpol *qpol_new(const char *zone);
void qpol_free(struct qpol *p); /* NULL: no-op */

/* Sets the zone while the policy is being built: quaid's configuration may
 * name its zone after its rules. Returns 0, or -EINVAL for a zone that is
 * not a valid label (the policy is then without a zone, as above). */
int qpol_set_zone(struct qpol *p, const char *zone);
/* The zone; "" when it has none. */
const char *qpol_zone(const struct qpol *p);

/* Adds rule `name` (the part of the key after "rule_": [a-z0-9_]+) from
 * its value, after the rules already added. Resolves user and group names
 * (getpwnam_r/getgrnam_r) now. Returns 0; -QUAI_EFORMAT with err saying
 * what and where in the value (e.g. "ops: 'reed' is not list, stream,
 * pull, push, read, write or all", "groups: no group 'train' on this
 * host", "hosts: '10.0.0.0/33' is not an address or prefix"); -ENOMEM. A
 * name given twice is refused. */
int qpol_add_rule(struct qpol *p, const char *name, const char *value, char *err, size_t err_len);

/* "zone_hosts = NET[,NET...]" (space or comma separated addresses or
 * CIDR prefixes): the hosts in this quaid's zone, the only ones sensitive
 * data is streamed or pulled to. Replaces the previous list; on error the
 * policy is unchanged. Returns 0, -QUAI_EFORMAT with err, -ENOMEM. */
int qpol_set_zone_hosts(struct qpol *p, const char *value, char *err, size_t err_len);

/* "unauthenticated = no|public": whether clients without a credential may
 * list, stream and pull public datasets (never anything else, never push).
 * Returns 0 or -QUAI_EFORMAT with err. */
int qpol_set_unauthenticated(struct qpol *p, const char *value, char *err, size_t err_len);

/* Number of rules; whether unauthenticated public access is on. */
unsigned qpol_nrules(const struct qpol *p);
int qpol_unauthenticated(const struct qpol *p);

/* Writes the policy as configuration lines (unauthenticated, zone_hosts,
 * rule_NAME = ...), normalised, to buf (NUL-terminated, truncated to
 * len): for quaid --check-config. As there, a setting at its default is a
 * comment ("# unauthenticated = no (default)"), and so is the lack of
 * rules. Users and groups are written as they were given (names, or
 * uid:N / gid:N). Returns the length it needed, without the NUL. */
size_t qpol_format(const struct qpol *p, char *buf, size_t len);

/* Who asks: what authentication established. */
struct qpol_subject {
	int authenticated; /* 0: no credential (uid, gids, names unset) */
	uint32_t uid;
	const uint32_t *gids; /* primary group first, then supplementary */
	size_t ngids;
	const char *user;	      /* for messages; NULL: "uid N" */
	int has_addr;		      /* the origin address the credential names */
	struct sockaddr_storage addr; /* AF_INET or AF_INET6 */
};

/* What is asked for. */
struct qpol_request {
	int op;		     /* enum qpol_op */
	const char *dataset; /* name; "" for a request about no dataset (LIST, STAT) */
	int classification;  /* enum quai_class; 0 when no dataset */
	const char *zone;    /* the dataset's residency zone; NULL when no dataset */
};

struct qpol_decision {
	int allow;
	char rule[72]; /* what decided: a rule's name, or one of the fixed
			  names below */
	char why[512]; /* refused: the reason, naming the rule and what would
			  satisfy it; allowed: "" */
};

/* Fixed rule names in decisions (never a configured rule's name, which
 * cannot hold '-' or ':'):
 *   "auth:required"      no credential, and the request is not a read of a
 *                        public dataset with unauthenticated = public
 *   "auth:public"        allowed: unauthenticated read of public data
 *   "sovereign:zone"     a sensitive dataset of another zone than quaid's
 *                        (neither served nor accepted)
 *   "sovereign:hosts"    a sensitive stream or pull to a host not in
 *                        zone_hosts (or with no authenticated address)
 *   "default"            no rule matched
 * These checks come first, in this order, before any rule: a rule can
 * never allow what they refuse.
 *
 * A request about no dataset (dataset "": LIST, STAT) is matched by an
 * allow rule whatever its classes= and datasets= (listing is allowed; the
 * server then decides each dataset listed on its own), and never by a
 * deny rule that has classes= or datasets= (those deny datasets, not the
 * listing). A dataset with classification 0 is taken as internal, one
 * out of range as sensitive. An unknown op is refused ("default"). */

/* Decides. Pure and thread-safe. Always fills d; returns d->allow. */
int qpol_decide(const struct qpol *p, const struct qpol_subject *s, const struct qpol_request *rq,
		struct qpol_decision *d);

#endif /* QUAI_STAGER_POLICY_H */
