/* SPDX-License-Identifier: Apache-2.0 */
/* Presentation helpers of the quai CLI (see cli_util.h). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quai/quai.h"
#include "cli_util.h"
#include "strutil.h"

int cli_exit_code(int err)
{
	if (err >= 0)
		return CLI_EXIT_OK;
	switch (-err) {
	case ECANCELED:
	case EINTR:
		return cli_interrupted() ? 128 + cli_interrupted() : CLI_EXIT_INTERRUPTED;
	case QUAI_ECORRUPT:
	case QUAI_EFORMAT:
		return CLI_EXIT_BAD_DATA;
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ECONNRESET:
	case ECONNREFUSED:
	case ECONNABORTED:
	case ENETUNREACH:
	case EPROTO:
	case EBADMSG:
	case ESHUTDOWN:
	case EUSERS:
		return CLI_EXIT_REMOTE;
	case QUAI_EVERSION:
		return CLI_EXIT_VERSION;
	case QUAI_EPOLICY:
		return CLI_EXIT_REFUSED;
	default:
		return CLI_EXIT_FAILURE;
	}
}

void cli_errorf(const char *verb, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "quai %s: ", verb);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_usage_error(const char *verb, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "quai %s: ", verb);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'quai %s --help'.\n", verb);
	return CLI_EXIT_USAGE;
}

/* ---- parsing ---------------------------------------------------------- */

int cli_parse_u64(const char *s, uint64_t *ret)
{
	const char *end;
	uint64_t v;
	int r;

	r = qstr_parse_digits(s, &end, &v);
	if (r < 0)
		return r;
	if (*end)
		return -EINVAL;
	*ret = v;
	return 0;
}

int cli_parse_int(const char *s, int *ret)
{
	bool neg = false;
	uint64_t v;
	int r;

	if (*s == '-' || *s == '+') {
		neg = *s == '-';
		s++;
	}
	r = cli_parse_u64(s, &v);
	if (r < 0)
		return r;
	if (v > (uint64_t)INT32_MAX + (neg ? 1 : 0))
		return -ERANGE;
	*ret = neg ? (int)(-(int64_t)v) : (int)v;
	return 0;
}

int cli_parse_size(const char *s, uint64_t *ret)
{
	return qstr_parse_size(s, 0, ret);
}

int cli_parse_range(const char *s, uint64_t *ret_a, uint64_t *ret_b, bool *ret_has_b)
{
	const char *colon = strchr(s, ':');
	uint64_t a = 0, b = 0;
	const char *end;
	int r;

	if (!colon)
		return -EINVAL;
	if (colon != s) {
		r = qstr_parse_digits(s, &end, &a);
		if (r < 0)
			return r;
		if (end != colon)
			return -EINVAL;
	}
	if (colon[1]) {
		r = cli_parse_u64(colon + 1, &b);
		if (r < 0)
			return r;
		if (b < a)
			return -EINVAL;
	}
	*ret_a = a;
	*ret_b = b;
	*ret_has_b = colon[1] != '\0';
	return 0;
}

/* ---- formatting ------------------------------------------------------- */

void cli_format_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double v = (double)n;
	size_t u = 0;

	if (n < 1024) {
		snprintf(buf, len, "%" PRIu64 " B", n);
		return;
	}
	v /= 1024;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	/* Exact multiples read better whole: "4 KiB", "256 MiB". */
	snprintf(buf, len, v == (double)(uint64_t)v ? "%.0f %s" : "%.1f %s", v, units[u]);
}

void cli_format_ratio(uint64_t raw, uint64_t compressed, char *buf, size_t len)
{
	if (compressed)
		snprintf(buf, len, "%.2f", (double)raw / (double)compressed);
	else
		snprintf(buf, len, "-");
}

void cli_format_duration(double seconds, char *buf, size_t len)
{
	uint64_t s;

	if (seconds < 0)
		seconds = 0;
	if (seconds < 60) {
		snprintf(buf, len, seconds < 10 ? "%.2f s" : "%.1f s", seconds);
		return;
	}
	s = (uint64_t)(seconds + 0.5);
	if (s < 3600)
		snprintf(buf, len, "%" PRIu64 ":%02" PRIu64, s / 60, s % 60);
	else
		snprintf(buf, len, "%" PRIu64 ":%02" PRIu64 ":%02" PRIu64, s / 3600, s / 60 % 60,
			 s % 60);
}

char *cli_printable(const char *src, char *buf, size_t len)
{
	size_t i;

	if (!len)
		return buf;
	for (i = 0; src[i] && i + 1 < len; i++) {
		unsigned char c = (unsigned char)src[i];

		buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	buf[i] = '\0';
	return buf;
}

double cli_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double cli_rate_mbs(uint64_t bytes, double seconds)
{
	if (seconds <= 1e-6)
		return 0;
	return (double)bytes / seconds / 1e6;
}

/* ---- signals ---------------------------------------------------------- */

static volatile sig_atomic_t caught_signal;

static void on_signal(int sig)
{
	caught_signal = sig;
}

void cli_catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a blocking read of a pipe or terminal returns EINTR,
	 * so the work notices the flag instead of waiting for more input. */
	sa.sa_flags = SA_RESETHAND;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int cli_interrupted(void)
{
	return caught_signal;
}

/* ---- the progress line ------------------------------------------------ */

bool cli_stderr_is_tty(void)
{
	return isatty(STDERR_FILENO) == 1;
}

void cli_progress_init(struct cli_progress *p, bool enabled)
{
	memset(p, 0, sizeof(*p));
	p->enabled = enabled;
	p->start = cli_now();
}

static size_t terminal_width(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return 80;
}

/* Writes all of buf to stderr, ignoring failures: progress is best effort. */
static void write_stderr(const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(STDERR_FILENO, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

/* "0:07", "12:30", "1:02:03": whole seconds, rounded up. */
static void format_eta(double seconds, char *buf, size_t len)
{
	uint64_t s = seconds > 0 ? (uint64_t)seconds + 1 : 0;

	if (s < 3600)
		snprintf(buf, len, "%" PRIu64 ":%02" PRIu64, s / 60, s % 60);
	else
		snprintf(buf, len, "%" PRIu64 ":%02" PRIu64 ":%02" PRIu64, s / 3600, s / 60 % 60,
			 s % 60);
}

void cli_progress_update(struct cli_progress *p, uint64_t done, uint64_t total, const char *extra,
			 bool force)
{
	char line[512], sdone[32], stotal[32], eta[32];
	double now = cli_now(), elapsed, rate;
	size_t width, n;

	if (!p->enabled)
		return;
	if (!force && p->drawn && now - p->last < 0.1)
		return;
	p->last = now;
	elapsed = now - p->start;
	rate = cli_rate_mbs(done, elapsed);
	cli_format_bytes(done, sdone, sizeof(sdone));

	/* "\r" first, the text, then "erase to end of line", in one write. */
	if (total) {
		cli_format_bytes(total, stotal, sizeof(stotal));
		if (rate > 0 && done <= total)
			format_eta((double)(total - done) / (rate * 1e6), eta, sizeof(eta));
		else
			snprintf(eta, sizeof(eta), "--");
		snprintf(line + 1, sizeof(line) - 1, "%s / %s (%.0f%%), %.1f MB/s, ETA %s%s%s",
			 sdone, stotal, 100.0 * (double)done / (double)total, rate, eta,
			 extra ? ", " : "", extra ? extra : "");
	} else {
		snprintf(line + 1, sizeof(line) - 1, "%s, %.1f MB/s%s%s", sdone, rate,
			 extra ? ", " : "", extra ? extra : "");
	}
	line[0] = '\r';
	/* Never let the line wrap: a wrapped line cannot overwrite itself. */
	width = terminal_width();
	n = strlen(line);
	if (width > 1 && n - 1 > width - 1)
		n = width;
	if (n + 3 < sizeof(line)) {
		memcpy(line + n, "\033[K", 3);
		n += 3;
	}
	write_stderr(line, n);
	p->drawn = true;
}

void cli_progress_clear(struct cli_progress *p)
{
	if (!p->enabled || !p->drawn)
		return;
	write_stderr("\r\033[K", 4);
	p->drawn = false;
}

/* ---- output ----------------------------------------------------------- */

int cli_finish_stdout(const char *verb)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return CLI_EXIT_OK;
	if (errno == EPIPE)
		return CLI_EXIT_OK;
	fprintf(stderr, "quai %s: write error: %s\n", verb, quai_strerror(errno));
	return CLI_EXIT_FAILURE;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = write(fd, data, len);

		if (n < 0) {
			if (errno == EINTR && !cli_interrupted())
				continue;
			return -errno;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static void *out_main(void *arg)
{
	struct cli_out *o = arg;

	pthread_mutex_lock(&o->mu);
	for (;;) {
		while (!o->busy && !o->stop)
			pthread_cond_wait(&o->cv, &o->mu);
		if (!o->busy)
			break;
		char *p = o->busy;
		size_t n = o->busy_len;
		pthread_mutex_unlock(&o->mu);
		int r = o->err ? 0 : write_all(o->fd, p, n);
		pthread_mutex_lock(&o->mu);
		if (r < 0 && !o->err)
			o->err = r;
		o->spare = p;
		o->busy = NULL;
		pthread_cond_broadcast(&o->cv);
	}
	bool own = o->detached;
	pthread_mutex_unlock(&o->mu);
	if (own) {
		/* cli_out_free() left o to this thread. */
		free(o->spare);
		pthread_mutex_destroy(&o->mu);
		pthread_cond_destroy(&o->cv);
		free(o);
	}
	return NULL;
}

int cli_out_new(int fd, size_t cap, struct cli_out **ret_out)
{
	sigset_t stop, old;
	struct cli_out *o = calloc(1, sizeof(*o));
	int r;

	if (!o)
		return -ENOMEM;
	o->fd = fd;
	o->cap = cap;
	if (!cap) {
		*ret_out = o;
		return 0;
	}
	o->buf = malloc(cap);
	o->spare = malloc(cap);
	if (!o->buf || !o->spare) {
		cli_out_free(o);
		return -ENOMEM;
	}
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
	/* Signals stay with the caller's thread, which notices them. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, &old);
	r = pthread_create(&o->thread, NULL, out_main, o);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		pthread_mutex_destroy(&o->mu);
		pthread_cond_destroy(&o->cv);
		cli_out_free(o);
		return -r;
	}
	o->started = true;
	*ret_out = o;
	return 0;
}

/* Waits, under o->mu, until the writer is idle or failed. The writer
 * takes no SIGINT or SIGTERM (they come here), and may be blocked on a
 * reader that reads no more: a caught signal ends the wait, -EINTR. */
static int out_wait_idle(struct cli_out *o)
{
	while (o->busy && !o->err) {
		struct timespec ts;

		if (cli_interrupted())
			return -EINTR;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&o->cv, &o->mu, &ts);
	}
	return o->err;
}

/* Hands the filled buffer to the writer once it is idle, and takes the
 * other one. Returns the writer's error, if any, or -EINTR. */
static int out_hand_off(struct cli_out *o)
{
	int r;

	pthread_mutex_lock(&o->mu);
	r = out_wait_idle(o);
	if (r == 0 && o->len) {
		o->busy = o->buf;
		o->busy_len = o->len;
		o->buf = o->spare;
		o->spare = NULL;
		o->len = 0;
		pthread_cond_broadcast(&o->cv);
	}
	pthread_mutex_unlock(&o->mu);
	return r;
}

int cli_out_flush(struct cli_out *o)
{
	int r;

	if (!o->cap)
		return 0;
	r = out_hand_off(o);
	pthread_mutex_lock(&o->mu);
	if (r == 0)
		r = out_wait_idle(o);
	pthread_mutex_unlock(&o->mu);
	return r;
}

int cli_out_write(struct cli_out *o, const void *data, size_t len)
{
	const char *p = data;

	if (!o->cap)
		return write_all(o->fd, p, len);
	while (len) {
		size_t n = o->cap - o->len < len ? o->cap - o->len : len;

		memcpy(o->buf + o->len, p, n);
		o->len += n;
		p += n;
		len -= n;
		if (o->len == o->cap) {
			int r = out_hand_off(o);

			if (r < 0)
				return r;
		}
	}
	return 0;
}

void cli_out_free(struct cli_out *o)
{
	if (!o)
		return;
	if (o->started) {
		pthread_mutex_lock(&o->mu);
		o->stop = true;
		pthread_cond_broadcast(&o->cv);
		if (o->busy && cli_interrupted()) {
			/* Maybe blocked on a reader that reads no more: the
			 * process ends without waiting for it. The writer
			 * frees o when it ends (out_main); the buffer being
			 * filled goes now. */
			free(o->buf);
			o->buf = NULL;
			o->detached = true;
			pthread_mutex_unlock(&o->mu);
			pthread_detach(o->thread);
			return;
		}
		pthread_mutex_unlock(&o->mu);
		pthread_join(o->thread, NULL);
		pthread_mutex_destroy(&o->mu);
		pthread_cond_destroy(&o->cv);
		o->started = false;
	}
	free(o->buf);
	free(o->spare);
	free(o->busy);
	free(o);
}

/* ---- JSON ------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (at most `left` bytes), or 0 when
 * the bytes there are not one: overlong forms, surrogates and code points
 * over U+10FFFF are invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t left)
{
	uint32_t cp;
	size_t n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static void json_quoted(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t left = strlen(str);

	fputc('"', f);
	while (left) {
		size_t n = utf8_sequence(s, left);

		if (n == 0) {
			fprintf(f, "\\u%04x", *s);
			n = 1;
		} else if (*s == '"' || *s == '\\') {
			fputc('\\', f);
			fputc(*s, f);
		} else if (*s == '\n') {
			fputs("\\n", f);
		} else if (*s == '\t') {
			fputs("\\t", f);
		} else if (*s == '\r') {
			fputs("\\r", f);
		} else if (*s < 0x20 || *s == 0x7f) {
			fprintf(f, "\\u%04x", *s);
		} else {
			fwrite(s, 1, n, f);
		}
		s += n;
		left -= n;
	}
	fputc('"', f);
}

void cli_json_init(struct cli_json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	j->first[0] = true;
}

/* Starts a value: the separator, the indentation and the key. */
static void json_member(struct cli_json *j, const char *key)
{
	if (j->depth > 0) {
		fputs(j->first[j->depth] ? "\n" : ",\n", j->f);
		fprintf(j->f, "%*s", 2 * j->depth, "");
	}
	j->first[j->depth] = false;
	if (key) {
		json_quoted(j->f, key);
		fputs(": ", j->f);
	}
}

static void json_open(struct cli_json *j, const char *key, char c)
{
	json_member(j, key);
	fputc(c, j->f);
	if (j->depth + 1 < CLI_JSON_MAX_DEPTH)
		j->depth++;
	j->first[j->depth] = true;
}

static void json_close(struct cli_json *j, char c)
{
	bool empty = j->first[j->depth];

	if (j->depth > 0)
		j->depth--;
	if (!empty)
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	fputc(c, j->f);
}

void cli_json_begin_object(struct cli_json *j, const char *key)
{
	json_open(j, key, '{');
}

void cli_json_end_object(struct cli_json *j)
{
	json_close(j, '}');
}

void cli_json_begin_array(struct cli_json *j, const char *key)
{
	json_open(j, key, '[');
}

void cli_json_end_array(struct cli_json *j)
{
	json_close(j, ']');
}

void cli_json_string(struct cli_json *j, const char *key, const char *value)
{
	json_member(j, key);
	json_quoted(j->f, value ? value : "");
}

void cli_json_u64(struct cli_json *j, const char *key, uint64_t value)
{
	json_member(j, key);
	fprintf(j->f, "%" PRIu64, value);
}

void cli_json_i64(struct cli_json *j, const char *key, int64_t value)
{
	json_member(j, key);
	fprintf(j->f, "%" PRId64, value);
}

void cli_json_null(struct cli_json *j, const char *key)
{
	json_member(j, key);
	fputs("null", j->f);
}

void cli_json_finish(struct cli_json *j)
{
	fputc('\n', j->f);
}

const char *cli_stdout_file(char *buf, size_t len, int *err)
{
	struct stat st, st2;
	*err = 0;
	if (fstat(STDOUT_FILENO, &st) < 0 || !S_ISREG(st.st_mode))
		return NULL;
	ssize_t n = readlink("/proc/self/fd/1", buf, len - 1);
	if (n <= 0 || (size_t)n >= len - 1 || buf[0] != '/') {
		*err = -1;
		return NULL;
	}
	buf[n] = '\0';
	/* An unlinked file reads "/path (deleted)": there is no path to it. */
	if (stat(buf, &st2) < 0 || st2.st_ino != st.st_ino || st2.st_dev != st.st_dev) {
		*err = -1;
		return NULL;
	}
	return buf;
}
