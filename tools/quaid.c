/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quaid — the quai data-mover daemon (docs/quaid.md).
 *
 * A thin main over the service (stager/service/server.h) and its configuration
 * (stager/site/svcconf.h): it reads the options and the file, writes the log,
 * turns signals into stop and reload, and tells systemd when it is ready.
 * What the service does lives in the library.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "quai/quai.h"
#include "server.h"
#include "policy.h"
#include "svcconf.h"

/* Exit statuses (docs/quaid.md). */
enum {
	EXIT_STOPPED = 0,  /* stopped cleanly, or --check-config found nothing */
	EXIT_CONFIG = 1,   /* the configuration has problems */
	EXIT_USAGE = 2,	   /* bad command line */
	EXIT_NO_START = 3, /* the service could not start, or failed */
};

#define LOG_LINE_MAX 4096

static const char help[] =
    "Usage: quaid [OPTION]...\n"
    "Serve quai datasets over libfabric: the site's data mover.\n"
    "\n"
    "  -c, --config FILE     the configuration file (default: $QUAID_CONF, else\n"
    "                        " QSVC_DEFAULT_PATH "; when that default is missing,\n"
    "                        every key has its default)\n"
    "      --check-config    print the effective configuration, check it on this\n"
    "                        host, and exit: 0 when it is fine, 1 with the problems\n"
    "                        on standard error\n"
    "      --listen NODE[:PORT]  listen there instead of the file's `listen`\n"
    "                        (an IPv6 address in brackets: [::1]:" QSVC_DEFAULT_PORT ")\n"
    "      --provider NAME   the libfabric provider instead of the file's\n"
    "      --log-level LEVEL error, warning, notice, info or debug\n"
    "  -h, --help            show this help\n"
    "  -V, --version         show the version\n"
    "\n"
    "Signals: SIGTERM or SIGINT stop cleanly; SIGHUP reopens the log and audit\n"
    "files, re-reads the datasets under the roots and reloads the policy (rule_,\n"
    "zone_hosts, unauthenticated) from the configuration file.\n"
    "\n"
    "Environment:\n"
    "  QUAID_CONF      the configuration file, when --config is not given\n"
    "  QUAI_CONF       the host configuration file, whose `zone` is quaid's default\n"
    "  FI_PROVIDER     the provider when neither --provider nor the file names one\n"
    "  NOTIFY_SOCKET   set by systemd (Type=notify): quaid reports READY=1 there\n"
    "  JOURNAL_STREAM  set by systemd: log lines then carry syslog priorities\n"
    "\n"
    "Exit status:\n"
    "  0  stopped cleanly (or --check-config found no problem)\n"
    "  1  the configuration has problems\n"
    "  2  usage error\n"
    "  3  the service could not start, or failed\n"
    "\n"
    "quaid does not authenticate clients yet: run it on a trusted network only.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("quaid: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'quaid --help'.\n", stderr);
	return EXIT_USAGE;
}

/* Flushes stdout, the last thing before a successful exit that printed. */
static int finish_stdout(int status)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "quaid: write error: %s\n", strerror(errno));
		return EXIT_NO_START;
	}
	return status;
}

/* ---- the log ---------------------------------------------------------- */

/* Where log lines go. The service calls the log function from its threads
 * one call at a time, but this program logs too, from the main and the
 * signal threads: the mutex orders them all, and guards the descriptor
 * that SIGHUP replaces. */
struct logger {
	pthread_mutex_t lock;
	int fd;		  /* STDERR_FILENO, or the log file */
	const char *path; /* the log file, NULL: stderr */
	int level;	  /* lines above it (less severe) are dropped */
	bool journal;	  /* stderr is systemd's journal: "<N>" prefixes */
};

static struct logger logger = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .fd = STDERR_FILENO,
    .level = QSVC_LOG_INFO,
};

/* Whether stderr is the stream systemd named in $JOURNAL_STREAM ("DEV:INO"):
 * only then may lines carry "<N>" priority prefixes, which journald reads;
 * a redirected stderr gets plain lines. */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	uintmax_t dev, ino;
	struct stat st;
	int n = 0;

	if (!e || sscanf(e, "%ju:%ju%n", &dev, &ino, &n) != 2 || e[n] != '\0')
		return false;
	return fstat(STDERR_FILENO, &st) == 0 && (uintmax_t)st.st_dev == dev &&
	       (uintmax_t)st.st_ino == ino;
}

static int open_log(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return; /* nowhere left to say so */
		p += k;
		n -= (size_t)k;
	}
}

/* The service's log function (qsrv_log_fn), and this program's. One
 * write() per line, so that lines from several processes appending to
 * one file do not interleave. */
static void log_line(int level, const char *msg, void *arg)
{
	struct logger *l = arg;
	const char *name = qsvc_log_level_name(level);
	char line[LOG_LINE_MAX + 128];
	size_t n = 0, room;

	if (level > l->level)
		return;
	if (!name)
		name = "?";
	pthread_mutex_lock(&l->lock);
	if (l->path) {
		/* A file has no one else to stamp the time. */
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		n = strftime(line, 32, "%Y-%m-%dT%H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, 16, ".%03ld", ts.tv_nsec / 1000000);
		n += strftime(line + n, 16, "%z ", &tm);
		n += (size_t)snprintf(line + n, 32, "quaid: %s: ", name);
	} else if (l->journal) {
		n = (size_t)snprintf(line, 8, "<%d>", level);
	} else {
		n = (size_t)snprintf(line, 32, "quaid: %s: ", name);
	}
	/* One line whatever msg holds: a control byte (a newline in a name a
	 * client sent) could otherwise forge log lines. */
	room = sizeof(line) - n - 4;
	for (; *msg && room; msg++, room--)
		line[n++] = (unsigned char)*msg < 0x20 || *msg == 0x7f ? '?' : *msg;
	if (*msg) {
		memcpy(line + n, "...", 3);
		n += 3;
	}
	line[n++] = '\n';
	write_all(l->fd, line, n);
	pthread_mutex_unlock(&l->lock);
}

static void logf_(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void logf_(int level, const char *fmt, ...)
{
	char msg[LOG_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_line(level, msg, &logger);
}

/* Errors that end the program before it serves also go to stderr when the
 * log is a file: whoever started quaid by hand is looking there. */
static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fatal(const char *fmt, ...)
{
	char msg[LOG_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_line(QSVC_LOG_ERROR, msg, &logger);
	if (logger.path)
		fprintf(stderr, "quaid: %s\n", msg);
}

/* SIGHUP: logrotate has moved the file away; write to a new one. The old
 * descriptor stays in use when the new file cannot be opened. */
static void reopen_log(void)
{
	int fd, old;

	if (!logger.path)
		return;
	fd = open_log(logger.path);
	if (fd < 0) {
		logf_(QSVC_LOG_ERROR,
		      "cannot reopen the log file %s: %s (still writing to the old one)",
		      logger.path, strerror(errno));
		return;
	}
	pthread_mutex_lock(&logger.lock);
	old = logger.fd;
	logger.fd = fd;
	pthread_mutex_unlock(&logger.lock);
	close(old);
}

/* ---- systemd readiness ------------------------------------------------ */

/* sd_notify(3)'s protocol without libsystemd: one datagram to the
 * AF_UNIX socket in $NOTIFY_SOCKET, a path or, after '@', an abstract
 * name. Nothing to do when quaid was not started by systemd. */
static void notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n;
	int fd;

	if (!path || !*path)
		return;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n < 2 || n >= sizeof(sa.sun_path)) {
		logf_(QSVC_LOG_WARNING, "NOTIFY_SOCKET='%s' is not a socket address; not notifying",
		      path);
		return;
	}
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
			     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
		logf_(QSVC_LOG_WARNING, "cannot notify systemd at %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* ---- signals ---------------------------------------------------------- */

/* Signals are blocked in every thread and taken here, one at a time, with
 * sigwait(): what they trigger then runs as ordinary code, not in a
 * handler. */
/* A configuration SIGHUP read again, kept until the service is gone: its
 * policy may still be read by a decision under way. */
struct reloaded {
	struct qsvc_conf conf;
	struct reloaded *next;
};

struct sigthread {
	pthread_t thread;
	sigset_t set;
	struct qsrv *srv;
	const struct qsvc_conf *conf; /* what the service was started with */
	const char *path;	      /* the configuration file */
	bool named;		      /* given by --config or $QUAID_CONF */
	struct reloaded *reloaded;
	atomic_bool exiting; /* main is done: the next signal ends the thread */
	bool stopping;
};

/* SIGHUP: the policy (rule_ lines, zone_hosts, unauthenticated) is read
 * again from the configuration file and put in force; the other keys take
 * a restart. A file that no longer parses, or that moves quaid to another
 * zone, changes nothing. */
static void reload_policy(struct sigthread *t)
{
	struct reloaded *n = calloc(1, sizeof(*n));
	char err[1024];
	int r;

	if (!n)
		return;
	qsvc_conf_init(&n->conf);
	r = qsvc_conf_load(t->path, &n->conf, err, sizeof(err));
	if (r < 0 && !(r == -ENOENT && !t->named)) {
		logf_(QSVC_LOG_ERROR, "SIGHUP: %s: the policy in force stays", err);
	} else if (strcmp(n->conf.zone, t->conf->zone) != 0) {
		logf_(QSVC_LOG_ERROR,
		      "SIGHUP: %s now says zone %s, and quaid serves zone %s: a zone changes "
		      "with a restart only; the policy in force stays",
		      t->path, n->conf.zone, t->conf->zone);
	} else {
		qsrv_set_policy(t->srv, n->conf.policy);
		logf_(QSVC_LOG_NOTICE,
		      "SIGHUP: policy reloaded from %s: %u rules, unauthenticated clients %s",
		      t->path, qpol_nrules(n->conf.policy),
		      qpol_unauthenticated(n->conf.policy) ? "may read public datasets"
							   : "refused");
		n->next = t->reloaded;
		t->reloaded = n;
		return;
	}
	qsvc_conf_free(&n->conf);
	free(n);
}

static const char *sig_name(int sig)
{
	return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "SIGHUP";
}

static void *signal_main(void *arg)
{
	struct sigthread *t = arg;
	int sig;

	for (;;) {
		if (sigwait(&t->set, &sig) != 0)
			continue;
		if (atomic_load(&t->exiting))
			return NULL;
		if (sig == SIGHUP) {
			reopen_log();
			qsrv_reload(t->srv);
			reload_policy(t);
			logf_(QSVC_LOG_NOTICE, "SIGHUP: %sservice reloaded",
			      logger.path ? "log file reopened, " : "");
		} else if (!t->stopping) {
			t->stopping = true;
			logf_(QSVC_LOG_NOTICE, "%s: stopping", sig_name(sig));
			notify("STOPPING=1");
			qsrv_stop(t->srv);
		} else {
			logf_(QSVC_LOG_NOTICE, "%s: already stopping", sig_name(sig));
		}
	}
}

/* ---- serving ---------------------------------------------------------- */

/* Runs qsvc_conf_check() and hands each problem it finds, one line, to
 * `say`. Returns the number of problems, or -ENOMEM. */
static int check_conf(const struct qsvc_conf *conf, void (*say)(const char *fmt, ...))
{
	char *text = NULL, *line, *save = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int n = 0;

	if (!f)
		return -ENOMEM;
	qsvc_conf_check(conf, f);
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++)
		say("%s", line);
	free(text);
	return n;
}

static void say_stderr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say_stderr(const char *fmt, ...)
{
	va_list ap;

	fputs("quaid: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* What is valid but likely not meant (qsvc_conf_warn), logged. */
static void log_warnings(const struct qsvc_conf *conf)
{
	char *text = NULL, *line, *save = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return;
	qsvc_conf_warn(conf, f);
	fclose(f);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		logf_(QSVC_LOG_WARNING, "%s", line);
	free(text);
}

static int serve(const struct qsvc_conf *conf, const char *path, bool named)
{
	struct sigthread st = {.exiting = false, .conf = conf, .path = path, .named = named};
	char err[1024] = "";
	int r, n, log_fd = -1, log_errno = 0, status = EXIT_STOPPED;

	/* Broken connections are errors the service handles, not a death. */
	signal(SIGPIPE, SIG_IGN);
	/* Before any thread exists, so that the service's threads inherit the
	 * mask and only the signal thread ever takes these. */
	sigemptyset(&st.set);
	sigaddset(&st.set, SIGTERM);
	sigaddset(&st.set, SIGINT);
	sigaddset(&st.set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &st.set, NULL);

	logger.level = conf->log_level;
	logger.journal = stderr_is_journal();
	if (conf->log_file) {
		/* When it cannot be opened, the check below says why, with the
		 * other problems, on stderr. */
		log_fd = open_log(conf->log_file);
		log_errno = errno;
		if (log_fd >= 0) {
			logger.fd = log_fd;
			logger.path = conf->log_file;
		}
	}

	n = check_conf(conf, fatal);
	if (n != 0) {
		if (n < 0)
			fatal("cannot check the configuration: %s", strerror(-n));
		return n < 0 ? EXIT_NO_START : EXIT_CONFIG;
	}
	if (conf->log_file && log_fd < 0) {
		fatal("cannot open the log file %s: %s", conf->log_file, strerror(log_errno));
		return EXIT_NO_START;
	}

	r = qsrv_new(conf, log_line, &logger, &st.srv, err, sizeof(err));
	if (r < 0) {
		fatal("cannot start: %s (%s)", err[0] ? err : "no detail", quai_strerror(r));
		return EXIT_NO_START;
	}
	logf_(QSVC_LOG_NOTICE, "listening on %s (provider %s, zone %s)", qsrv_address(st.srv),
	      qsvc_conf_provider(conf), conf->zone);
	logf_(QSVC_LOG_INFO, "policy: %u rules, unauthenticated clients %s; audit log %s",
	      qpol_nrules(conf->policy),
	      qpol_unauthenticated(conf->policy) ? "may read public datasets" : "refused",
	      conf->audit_log ? conf->audit_log : "none (audit_log is not set)");
	log_warnings(conf);

	r = pthread_create(&st.thread, NULL, signal_main, &st);
	if (r != 0) {
		fatal("cannot start the signal thread: %s", strerror(r));
		qsrv_free(st.srv);
		return EXIT_NO_START;
	}
	{
		char ready[LOG_LINE_MAX];

		snprintf(ready, sizeof(ready), "READY=1\nSTATUS=listening on %s",
			 qsrv_address(st.srv));
		notify(ready);
	}

	r = qsrv_run(st.srv);
	if (r < 0) {
		fatal("the service failed: %s", quai_strerror(r));
		status = EXIT_NO_START;
	}

	/* End the signal thread before the service goes away: it may be
	 * inside qsrv_reload() right now. */
	atomic_store(&st.exiting, true);
	pthread_kill(st.thread, SIGTERM);
	pthread_join(st.thread, NULL);
	if (!st.stopping)
		notify("STOPPING=1");
	qsrv_free(st.srv);
	while (st.reloaded) {
		struct reloaded *old = st.reloaded;

		st.reloaded = old->next;
		qsvc_conf_free(&old->conf);
		free(old);
	}
	if (status == EXIT_STOPPED)
		logf_(QSVC_LOG_NOTICE, "stopped");
	return status;
}

/* ---- main ------------------------------------------------------------- */

enum {
	OPT_CHECK_CONFIG = 256,
	OPT_LISTEN,
	OPT_PROVIDER,
	OPT_LOG_LEVEL,
};

static const struct option options[] = {
    {"config", required_argument, NULL, 'c'},
    {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"provider", required_argument, NULL, OPT_PROVIDER},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
	const char *path = NULL, *overrides[3][2] = {{"listen"}, {"provider"}, {"log_level"}};
	const char *opt_names[3] = {"--listen", "--provider", "--log-level"};
	bool check_only = false, named = true;
	struct qsvc_conf conf;
	char err[8192];
	int c, r, status;

	/* getopt's own messages then read "quaid: unrecognized option". */
	static char prog[] = "quaid";

	if (argc > 0)
		argv[0] = prog;
	while ((c = getopt_long(argc, argv, "c:hV", options, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case OPT_CHECK_CONFIG:
			check_only = true;
			break;
		case OPT_LISTEN:
		case OPT_PROVIDER:
		case OPT_LOG_LEVEL:
			overrides[c - OPT_LISTEN][1] = optarg;
			break;
		case 'h':
			fputs(help, stdout);
			return finish_stdout(EXIT_STOPPED);
		case 'V':
			printf("quaid %s\n", quai_version());
			return finish_stdout(EXIT_STOPPED);
		default:
			fputs("Try 'quaid --help'.\n", stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);

	if (!path) {
		path = secure_getenv("QUAID_CONF");
		if (!path || !*path) {
			path = QSVC_DEFAULT_PATH;
			named = false;
		}
	}

	qsvc_conf_init(&conf);
	r = qsvc_conf_load(path, &conf, err, sizeof(err));
	if (r < 0 && !(r == -ENOENT && !named)) {
		fprintf(stderr, "quaid: %s\n", err);
		qsvc_conf_free(&conf);
		return EXIT_CONFIG;
	}
	for (int i = 0; i < 3; i++) {
		if (!overrides[i][1])
			continue;
		size_t k = strlen(overrides[i][0]);

		if (qsvc_conf_set(&conf, overrides[i][0], overrides[i][1], err, sizeof(err)) < 0) {
			/* "listen: 'x': ..." reads "--listen: 'x': ...". */
			bool keyed = strncmp(err, overrides[i][0], k) == 0 && err[k] == ':';

			qsvc_conf_free(&conf);
			return usage_error("%s: %s", opt_names[i], keyed ? err + k + 2 : err);
		}
	}

	if (check_only) {
		if (r == -ENOENT)
			printf("# %s does not exist: every key has its default\n", path);
		else
			printf("# %s\n", path);
		qsvc_conf_print(&conf, stdout);
		fflush(stdout);
		qsvc_conf_warn(&conf, stderr);
		r = check_conf(&conf, say_stderr);
		if (r < 0)
			say_stderr("cannot check the configuration: %s", strerror(-r));
		status = r < 0 ? EXIT_NO_START : r > 0 ? EXIT_CONFIG : EXIT_STOPPED;
		qsvc_conf_free(&conf);
		return finish_stdout(status);
	}

	status = serve(&conf, path, named);
	qsvc_conf_free(&conf);
	return status;
}
