//go:build linux && cgo

/*
 * corral-init: the PID 1 of every corral sandbox.
 *
 * corral_pid1_main runs from a constructor (see init_linux.go), before the Go
 * runtime starts, in every process of the corral binary. Without the
 * environment variable _CORRAL_PID1 it returns at once. With it, the process
 * is the sandbox's init and never returns to Go:
 *
 *   1. parse _CORRAL_PID1 and drop it from the environment;
 *   2. make itself undumpable (the command shares its uid and must not reach
 *      its fds through /proc/1/fd or ptrace); become a subreaper when it is
 *      not PID 1, so that orphans are still its to reap;
 *   3. block every signal and take them from a signalfd;
 *   4. fork the command (with its output on two pipes when logging), load
 *      its seccomp program, exec it;
 *   5. forward signals to it, reap every child, write its output to
 *      timestamped records in rotated files (the status record says when
 *      lines are being lost), and when it ends record how and exit the same
 *      way.
 *
 * The protocol (variable, status record, exit codes, log format) is
 * documented on package pid1 in pid1.go; keep the two in step.
 *
 * There is one thread and every signal is blocked, so nothing here runs in a
 * signal handler. Memory is static: two line buffers, the status record's
 * state line, the seccomp program (touched in the child only) and a few
 * small arrays on the stack.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

extern char **environ;

#define ENV_NAME "_CORRAL_PID1"

/* Exit codes of the init itself; otherwise it exits as the command did. */
#define EXIT_INIT 125     /* bad _CORRAL_PID1, or the init could not start the command */
#define EXIT_NOEXEC 126   /* the command was found but could not be executed */
#define EXIT_NOTFOUND 127 /* the command was not found */

#define LOG_NAME "output.log"
#define LOG_FILES_MAX 1000
#define LOG_LINE_MAX 16384     /* longer lines are cut into records of this size */
#define LOG_IDLE_MS 100        /* a partial line is written after this long without new output */
#define LOG_DRAIN_MAX (1 << 20) /* bytes read from each pipe once the command has ended */

/* The configuration, from _CORRAL_PID1. */
static struct {
	int status;  /* fd of the status file */
	int seccomp; /* fd of the raw BPF program, or -1 */
	int logdir;  /* fd of the log directory, or -1 */
	int keep;    /* fd of a socket held open for the sandbox's life, or -1 */
	long long logmax;
	int logfiles;
} cfg = { -1, -1, -1, -1, -1, -1 }; /* logmax and logfiles come with logdir: their defaults are spec's */

/* The command. */
static pid_t child = -1;
static int child_done;   /* reaped; child_status is its wait status */
static int child_status;

/* What the child sends back through the CLOEXEC pipe when it cannot exec. */
struct failure {
	int err;
	char msg[200]; /* NUL-terminated */
};

/* ---- messages and the status record ---- */

/* warnx prints "corral-init: MESSAGE" on the init's stderr. */
static void warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnx(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n = snprintf(buf, sizeof buf, "corral-init: ");

	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	if ((size_t)n + m > sizeof buf - 2)
		m = sizeof buf - 2 - n; /* truncated */
	n += m;
	buf[n++] = '\n';
	/* Nowhere to report a failure to write to stderr. */
	if (write(STDERR_FILENO, buf, n) < 0)
		return;
}

/* die reports a bad configuration and exits before anything was started. */
static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	char buf[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	warnx("%s", buf);
	_exit(EXIT_INIT);
}

/* The status record is the state line, then "log-lost TOTAL ERRNO" once a
 * log line was lost. The two change apart (the log's state many times while
 * the command runs), so the last state line is kept to rewrite both. */
static char status_line[300];
static int status_len; /* 0 until the first state line */

static void log_state(unsigned long long *lost, int *err);

/* put_status replaces the status record with status_line and the log's
 * state. sync makes it durable: a new state must survive the init, the
 * log's state alone is read while the init runs, and the final record
 * carries it anyway. */
static void put_status(int sync)
{
	char buf[sizeof status_line + 64];
	unsigned long long lost;
	int err;
	int n = status_len;

	/* No record before the command was forked: until then the file stays
	 * empty, which tells the daemon that the init is not ready. */
	if (status_len == 0)
		return;
	memcpy(buf, status_line, n);
	log_state(&lost, &err);
	if (lost > 0)
		n += snprintf(buf + n, sizeof buf - n, "log-lost %llu %d\n", lost, err);
	ssize_t w;
	do
		w = pwrite(cfg.status, buf, n, 0);
	while (w < 0 && errno == EINTR);
	if (w != n) {
		warnx("write status: %s", w < 0 ? strerror(errno) : "short write");
		return;
	}
	if (ftruncate(cfg.status, n) != 0)
		warnx("truncate status: %s", strerror(errno));
	if (sync && fsync(cfg.status) != 0)
		warnx("sync status: %s", strerror(errno));
}

/* write_status sets the state line, one line of ASCII, and rewrites the
 * record. */
static void write_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void write_status(const char *fmt, ...)
{
	char buf[sizeof status_line];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof buf) {
		warnx("status record too long");
		return;
	}
	memcpy(status_line, buf, n);
	status_len = n;
	put_status(1);
}

/* fail reports that the init could not start the command, and exits. */
static void fail(int err, const char *what) __attribute__((noreturn));
static void fail(int err, const char *what)
{
	warnx("%s: %s", what, strerror(err));
	write_status("exec-failed %d %s: %s\n", err, what, strerror(err));
	_exit(EXIT_INIT);
}

/* xclose closes fd; a failure can only be reported. */
static void xclose(int fd)
{
	if (close(fd) != 0 && errno != EINTR)
		warnx("close fd %d: %s", fd, strerror(errno));
}

static long long now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0; /* cannot fail with these arguments */
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- configuration ---- */

/* parse_num parses the decimal number [s, end) into *out: digits only, from
 * min to max. */
static int parse_num(const char *s, const char *end, long long min, long long max, long long *out)
{
	long long v = 0;

	if (s == end)
		return -1;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		int d = *s - '0';
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (v < min)
		return -1;
	*out = v;
	return 0;
}

/* check_fd checks that fd is open, of the type (S_IFREG, S_IFDIR, S_IFSOCK) its key
 * wants and, when mode is O_RDONLY or O_WRONLY, readable or writable at an
 * offset; it marks it close-on-exec. */
static void check_fd(const char *key, int fd, mode_t type, int mode)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		die("%s=%d: %s", key, fd, strerror(errno));
	if ((st.st_mode & S_IFMT) != type)
		die("%s=%d: not a %s", key, fd,
		    type == S_IFDIR ? "directory" : type == S_IFSOCK ? "socket" : "regular file");
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		die("%s=%d: %s", key, fd, strerror(errno));
	if (mode == O_WRONLY && ((fl & O_ACCMODE) == O_RDONLY || (fl & O_APPEND)))
		die("%s=%d: not open for writing at an offset (read-only, or O_APPEND)", key, fd);
	if (mode == O_RDONLY && (fl & O_ACCMODE) == O_WRONLY)
		die("%s=%d: not open for reading", key, fd);
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
		die("%s=%d: %s", key, fd, strerror(errno));
}

/* parse_config reads spec, a comma-separated list of key=value, into cfg. */
static void parse_config(const char *spec)
{
	static const struct {
		const char *name;
		long long min, max;
	} keys[] = {
		/* fds 0, 1 and 2 are the command's, so the init's start at 3. */
		{ "status", 3, INT_MAX },
		{ "seccomp", 3, INT_MAX },
		{ "logdir", 3, INT_MAX },
		{ "logmax", 1, LLONG_MAX },
		{ "logfiles", 1, LOG_FILES_MAX },
		{ "keep", 3, INT_MAX },
	};
	enum { STATUS, SECCOMP, LOGDIR, LOGMAX, LOGFILES, KEEP, NKEYS };
	long long val[NKEYS] = { 0 };
	int seen[NKEYS] = { 0 };
	const char *p = spec;

	for (;;) {
		const char *end = strchrnul(p, ',');
		const char *eq = memchr(p, '=', end - p);
		int len = (int)(end - p);
		size_t k;

		if (eq == NULL)
			die("%s=\"%s\": item \"%.*s\" is not key=value", ENV_NAME, spec, len, p);
		for (k = 0; k < NKEYS; k++)
			if (strlen(keys[k].name) == (size_t)(eq - p) && memcmp(keys[k].name, p, eq - p) == 0)
				break;
		if (k == NKEYS)
			die("%s=\"%s\": unknown key \"%.*s\"", ENV_NAME, spec, (int)(eq - p), p);
		if (seen[k])
			die("%s=\"%s\": %s given twice", ENV_NAME, spec, keys[k].name);
		seen[k] = 1;
		if (parse_num(eq + 1, end, keys[k].min, keys[k].max, &val[k]) != 0)
			die("%s=\"%s\": %.*s: want a number from %lld to %lld", ENV_NAME, spec, len, p,
			    keys[k].min, keys[k].max);
		if (*end == '\0')
			break;
		p = end + 1;
	}
	if (!seen[STATUS])
		die("%s=\"%s\": status= is required", ENV_NAME, spec);

	cfg.status = (int)val[STATUS];
	if (seen[SECCOMP])
		cfg.seccomp = (int)val[SECCOMP];
	if (seen[LOGDIR])
		cfg.logdir = (int)val[LOGDIR];
	if (seen[LOGMAX])
		cfg.logmax = val[LOGMAX];
	if (seen[LOGFILES])
		cfg.logfiles = (int)val[LOGFILES];
	if (seen[KEEP])
		cfg.keep = (int)val[KEEP];
	if (seen[LOGDIR] && !(seen[LOGMAX] && seen[LOGFILES]))
		die("%s=\"%s\": logdir= needs logmax= and logfiles=", ENV_NAME, spec);

	int fds[] = { cfg.status, cfg.seccomp, cfg.logdir, cfg.keep };
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		for (size_t j = i + 1; j < sizeof fds / sizeof fds[0]; j++)
			if (fds[i] >= 0 && fds[i] == fds[j])
				die("%s=\"%s\": status, seccomp, logdir and keep must be different fds", ENV_NAME, spec);
	check_fd("status", cfg.status, S_IFREG, O_WRONLY);
	if (cfg.seccomp >= 0)
		check_fd("seccomp", cfg.seccomp, S_IFREG, O_RDONLY);
	if (cfg.logdir >= 0)
		check_fd("logdir", cfg.logdir, S_IFDIR, -1);
	if (cfg.keep >= 0)
		check_fd("keep", cfg.keep, S_IFSOCK, -1);
}

/* std_fds opens /dev/null on whichever of fds 0, 1, 2 is closed, so that no
 * pipe of ours lands there. */
static void std_fds(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		int n = open("/dev/null", O_RDWR);
		if (n != fd)
			die("open /dev/null for fd %d: %s", fd, n < 0 ? strerror(errno) : "wrong fd");
	}
}

/* ---- the log ---- */

static struct {
	int fd;                  /* output.log, or -1 until it can be opened */
	long long size;          /* its size */
	unsigned long dropped;   /* records lost since the last successful write */
	int err;                 /* why the last one was lost */
	unsigned long long lost; /* records lost over the sandbox's life */
	int warned;              /* a rotation failure was reported: report only one */
} logfile = { -1, 0, 0, 0, 0, 0 };

/* log_state gives the status record's view of the log: the records lost so
 * far, and why writing fails now (0 once it works again). */
static void log_state(unsigned long long *lost, int *err)
{
	*lost = logfile.lost;
	*err = logfile.dropped > 0 ? logfile.err : 0;
}

/* A stream of the command's output: the bytes of its current line. The one
 * extra byte lets a line of exactly LOG_LINE_MAX bytes and its newline fit. */
struct stream {
	const char *name;
	int fd;         /* read end of the pipe, or -1 */
	size_t len;     /* bytes in buf */
	long long last; /* now_ms() when bytes last arrived */
	char buf[LOG_LINE_MAX + 1];
};

static struct stream streams[2] = {
	{ .name = "stdout", .fd = -1 },
	{ .name = "stderr", .fd = -1 },
};

static void log_name(char *buf, size_t size, int i)
{
	if (i == 0)
		snprintf(buf, size, "%s", LOG_NAME);
	else
		snprintf(buf, size, "%s.%d", LOG_NAME, i);
}

/* log_open opens output.log for appending and learns its size. */
static int log_open(void)
{
	struct stat st;
	/* O_NOFOLLOW and O_NONBLOCK: never follow a planted symlink, never hang
	 * on a planted FIFO. */
	int fd = openat(cfg.logdir, LOG_NAME,
			O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0640);

	if (fd < 0)
		return -1;
	int e = fstat(fd, &st) != 0 ? errno : !S_ISREG(st.st_mode) ? EINVAL : 0;
	if (e != 0) {
		xclose(fd);
		errno = e;
		return -1;
	}
	logfile.fd = fd;
	logfile.size = st.st_size;
	return 0;
}

/* log_rotate shifts output.log.(N-2) to output.log.(N-1), ..., output.log to
 * output.log.1, and opens a new output.log. */
static void log_rotate(void)
{
	char from[32], to[32];

	xclose(logfile.fd);
	logfile.fd = -1;
	if (cfg.logfiles == 1 && unlinkat(cfg.logdir, LOG_NAME, 0) != 0 && errno != ENOENT &&
	    !logfile.warned) {
		logfile.warned = 1;
		warnx("rotate log: remove %s: %s", LOG_NAME, strerror(errno));
	}
	for (int i = cfg.logfiles - 1; i >= 1; i--) {
		log_name(from, sizeof from, i - 1);
		log_name(to, sizeof to, i);
		if (renameat(cfg.logdir, from, cfg.logdir, to) != 0 && errno != ENOENT && !logfile.warned) {
			logfile.warned = 1;
			warnx("rotate log: rename %s: %s", from, strerror(errno));
		}
	}
	log_open(); /* on failure logfile.fd stays -1 and the caller sees errno */
}

/* log_writev appends one record, rotating first if it would take the file
 * past logmax (a record larger than logmax gets a file of its own). On
 * failure nothing of the record stays in the file; errno says why. */
static int log_writev(struct iovec *iov, int cnt)
{
	size_t total = 0, done = 0;

	for (int i = 0; i < cnt; i++)
		total += iov[i].iov_len;
	if (logfile.fd < 0 && log_open() != 0)
		return -1;
	if (logfile.size > 0 && logfile.size + (long long)total > cfg.logmax) {
		log_rotate();
		if (logfile.fd < 0)
			return -1;
	}
	while (done < total) {
		ssize_t n = writev(logfile.fd, iov, cnt);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : ENOSPC;
			/* Cut off the part that was written, so a record is whole or absent. */
			if (done > 0 && ftruncate(logfile.fd, logfile.size) != 0)
				logfile.size += done;
			errno = e;
			return -1;
		}
		/* A short write (quota, file size limit): write the rest to learn why. */
		done += n;
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= n;
		}
	}
	logfile.size += total;
	return 0;
}

/* write_record writes "TIMESTAMP STREAM DATA\n". */
static int write_record(const char *stream, const char *data, size_t len)
{
	char prefix[64];
	struct timespec ts;
	struct tm tm;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || gmtime_r(&ts.tv_sec, &tm) == NULL)
		return -1;
	int n = snprintf(prefix, sizeof prefix, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ %s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, (long)(ts.tv_nsec / 1000), stream);
	struct iovec iov[3] = {
		{ prefix, (size_t)n },
		{ (void *)data, len },
		{ "\n", 1 },
	};
	return log_writev(iov, 3);
}

/* log_dropped counts a record that could not be written; errno says why.
 * The status record changes when the first one after a write is lost, not
 * at each: while the disk stays full, every line would cost a rewrite. */
static void log_dropped(void)
{
	logfile.err = errno != 0 ? errno : EIO; /* 0 would say that writing works */
	logfile.lost++;
	if (logfile.dropped++ == 0)
		put_status(0);
}

/* log_record logs one line of the command's output. A line that cannot be
 * written is dropped and counted; the next write says how many were lost,
 * and the status record that writing works again. */
static void log_record(const char *stream, const char *data, size_t len)
{
	if (logfile.dropped > 0) {
		char note[128];
		int n = snprintf(note, sizeof note, "corral-init: %lu log lines dropped (%s)",
				 logfile.dropped, strerror(logfile.err));
		if (write_record("stderr", note, n) != 0) {
			log_dropped();
			return;
		}
		logfile.dropped = 0;
		put_status(0);
	}
	if (write_record(stream, data, len) != 0)
		log_dropped();
}

/* stream_emit logs the complete lines in s's buffer and, when the buffer is
 * full or flush is set, the partial line at its end. */
static void stream_emit(struct stream *s, int flush)
{
	size_t start = 0;

	while (start < s->len) {
		char *b = s->buf + start;
		size_t left = s->len - start;
		char *nl = memchr(b, '\n', left);

		if (nl != NULL) {
			log_record(s->name, b, nl - b);
			start += nl - b + 1;
		} else if (left > LOG_LINE_MAX || flush) {
			size_t n = left > LOG_LINE_MAX ? LOG_LINE_MAX : left;
			log_record(s->name, b, n);
			start += n;
		} else {
			break;
		}
	}
	memmove(s->buf, s->buf + start, s->len - start);
	s->len -= start;
}

/* stream_read reads once from s's pipe: > 0 bytes read, 0 at EOF (the pipe
 * is then closed and the partial line logged), -1 nothing to read now. */
static ssize_t stream_read(struct stream *s)
{
	ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);

	if (n > 0) {
		s->len += n;
		s->last = now_ms();
		stream_emit(s, 0);
		return n;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return -1;
	if (n < 0)
		warnx("read %s: %s", s->name, strerror(errno));
	stream_emit(s, 1);
	xclose(s->fd);
	s->fd = -1;
	return 0;
}

/* idle_timeout is poll's timeout: until the oldest partial line is due. */
static int idle_timeout(void)
{
	long long now = now_ms();
	int t = -1;

	for (int i = 0; i < 2; i++) {
		if (streams[i].len == 0)
			continue;
		long long left = streams[i].last + LOG_IDLE_MS - now;
		if (left < 0)
			left = 0;
		if (t < 0 || left < t)
			t = (int)left;
	}
	return t;
}

/* flush_idle logs the partial lines that saw no new bytes for LOG_IDLE_MS:
 * a prompt or a progress dot shows up without waiting for its newline. The
 * rest of such a line becomes a record of its own. */
static void flush_idle(void)
{
	long long now = now_ms();

	for (int i = 0; i < 2; i++)
		if (streams[i].len > 0 && now - streams[i].last >= LOG_IDLE_MS)
			stream_emit(&streams[i], 1);
}

/* ---- the child ---- */

/* child_fail sends err and record (the status record's message) to the
 * parent, prints the stderr line, and exits. */
static void child_fail(int errfd, int err, const char *record, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 4, 5)));
static void child_fail(int errfd, int err, const char *record, const char *fmt, ...)
{
	struct failure f = { .err = err };
	char line[400];
	va_list ap;

	snprintf(f.msg, sizeof f.msg, "%s", record);
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	warnx("%s", line);
	/* Less than PIPE_BUF: all or nothing. If it fails, the parent reports
	 * the exit status 127 instead. */
	ssize_t w = write(errfd, &f, sizeof f);
	(void)w;
	_exit(EXIT_NOTFOUND);
}

/* child_step_fail reports that step failed with errno. */
static void child_step_fail(int errfd, const char *step) __attribute__((noreturn));
static void child_step_fail(int errfd, const char *step)
{
	int err = errno;
	char msg[200];

	snprintf(msg, sizeof msg, "%s: %s", step, strerror(err));
	child_fail(errfd, err, msg, "%s", msg);
}

static struct sock_filter program[BPF_MAXINSNS];

/* read_program reads the seccomp program into program[] and returns its
 * length in instructions. */
static unsigned short read_program(int errfd)
{
	char msg[200];
	struct stat st;
	size_t done = 0;

	if (fstat(cfg.seccomp, &st) != 0)
		child_step_fail(errfd, "seccomp: stat program");
	if (st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0) {
		snprintf(msg, sizeof msg, "seccomp: program is %lld bytes, not a positive multiple of %zu",
			 (long long)st.st_size, sizeof(struct sock_filter));
		child_fail(errfd, EINVAL, msg, "%s", msg);
	}
	if ((size_t)st.st_size > sizeof program) {
		snprintf(msg, sizeof msg, "seccomp: program has %lld instructions, more than %d",
			 (long long)(st.st_size / sizeof(struct sock_filter)), BPF_MAXINSNS);
		child_fail(errfd, EINVAL, msg, "%s", msg);
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = pread(cfg.seccomp, (char *)program + done, st.st_size - done, done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			snprintf(msg, sizeof msg, "seccomp: read program: %s",
				 n < 0 ? strerror(e) : "file shrank");
			child_fail(errfd, e, msg, "%s", msg);
		}
		done += n;
	}
	return (unsigned short)(done / sizeof(struct sock_filter));
}

/* load_program applies program[] to the child, setting no_new_privs first
 * if the runtime has not. */
static void load_program(int errfd, unsigned short len)
{
	struct sock_fprog prog = { .len = len, .filter = program };
	int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);

	if (nnp < 0 || (nnp == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0))
		child_step_fail(errfd, "seccomp: set no_new_privs");
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0)
		child_step_fail(errfd, "seccomp: load program");
}

/* close_fds closes every fd from 3 up except keep (>= 3). */
static void close_fds(int keep)
{
	if ((keep == 3 || syscall(SYS_close_range, 3, keep - 1, 0) == 0) &&
	    syscall(SYS_close_range, keep + 1, ~0U, 0) == 0)
		return;
	/* No close_range (Linux < 5.9): close them one by one. */
	struct rlimit rl;
	int max = 1 << 20;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)max)
		max = (int)rl.rlim_cur;
	for (int fd = 3; fd < max; fd++)
		if (fd != keep && close(fd) != 0 && errno != EBADF && errno != EINTR)
			warnx("close fd %d: %s", fd, strerror(errno));
}

/* run_child turns the forked child into the command. */
static void run_child(char **argv, int errfd, int outw, int errw) __attribute__((noreturn));
static void run_child(char **argv, int errfd, int outw, int errw)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t none;
	unsigned short ninsns = 0;

	/* Default dispositions (an ignored signal would stay ignored across
	 * exec) and an empty mask. SIGKILL, SIGSTOP and the signals glibc keeps
	 * for itself refuse with EINVAL: nothing to reset there. */
	sigemptyset(&sa.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		if (sigaction(sig, &sa, NULL) != 0 && errno != EINVAL)
			child_step_fail(errfd, "reset signal dispositions");
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
		child_step_fail(errfd, "unblock signals");

	if (outw >= 0 && (dup2(outw, STDOUT_FILENO) < 0 || dup2(errw, STDERR_FILENO) < 0))
		child_step_fail(errfd, "dup2 log pipes");
	if (cfg.seccomp >= 0)
		ninsns = read_program(errfd);
	close_fds(errfd);
	if (cfg.seccomp >= 0)
		load_program(errfd, ninsns);

	execvpe(argv[0], argv, environ);
	int e = errno;
	child_fail(errfd, e, strerror(e), "exec %s: %s", argv[0], strerror(e));
}

/* ---- the init ---- */

static int forwarded(int sig)
{
	switch (sig) {
	case SIGTERM: case SIGINT: case SIGHUP: case SIGQUIT:
	case SIGUSR1: case SIGUSR2: case SIGWINCH: case SIGCONT:
		return 1;
	}
	return 0;
}

/* reap waits for every child that has ended: the command, and the orphans
 * that were reparented to the init. */
static void reap(void)
{
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);

		if (p < 0 && errno == EINTR)
			continue;
		if (p < 0 && errno != ECHILD)
			warnx("wait: %s", strerror(errno));
		if (p <= 0)
			return;
		if (p == child) {
			child_status = st;
			child_done = 1;
		}
	}
}

/* handle_signals forwards the pending signals that are the command's and
 * reaps. The rest (SIGPIPE, SIGALRM, SIGXFSZ, ...) are dropped. */
static void handle_signals(int sfd)
{
	struct signalfd_siginfo si;

	for (;;) {
		ssize_t n = read(sfd, &si, sizeof si);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			warnx("read signalfd: %s", strerror(errno));
		if (n != sizeof si)
			break;
		if (forwarded(si.ssi_signo) && !child_done && kill(child, si.ssi_signo) != 0 &&
		    errno != ESRCH)
			warnx("forward signal %u: %s", si.ssi_signo, strerror(errno));
	}
	reap(); /* whether or not SIGCHLD came: it is cheap */
}

/* finish logs what the command left in the pipes, records how it ended and
 * exits the same way. Background processes may hold the pipes open: read
 * what is there now, at most LOG_DRAIN_MAX bytes, and do not wait for EOF. */
static void finish(int errpipe) __attribute__((noreturn));
static void finish(int errpipe)
{
	struct failure f;
	ssize_t n;
	int code;

	for (int i = 0; i < 2; i++) {
		size_t total = 0;
		while (streams[i].fd >= 0 && total < LOG_DRAIN_MAX && (n = stream_read(&streams[i])) > 0)
			total += n;
		stream_emit(&streams[i], 1);
	}

	/* The child was the only writer and it is gone: this cannot block. */
	do
		n = read(errpipe, &f, sizeof f);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		warnx("read exec result: %s", strerror(errno));

	if (n == sizeof f) {
		f.msg[sizeof f.msg - 1] = '\0';
		for (char *c = f.msg; *c; c++) /* one line of ASCII */
			if (*c < 0x20 || *c > 0x7e)
				*c = '?';
		write_status("exec-failed %d %s\n", f.err, f.msg);
		code = (f.err == ENOENT || f.err == ENOTDIR) ? EXIT_NOTFOUND : EXIT_NOEXEC;
	} else if (WIFSIGNALED(child_status)) {
		write_status("signaled %d\n", WTERMSIG(child_status));
		code = 128 + WTERMSIG(child_status);
	} else {
		write_status("exited %d\n", WEXITSTATUS(child_status));
		code = WEXITSTATUS(child_status);
	}
	_exit(code);
}

/* supervise is the init's loop, until the command ends. */
static void supervise(int sfd, int errpipe) __attribute__((noreturn));
static void supervise(int sfd, int errpipe)
{
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = streams[0].fd, .events = POLLIN }, /* poll skips fd -1 */
			{ .fd = streams[1].fd, .events = POLLIN },
		};

		if (poll(p, 3, idle_timeout()) < 0 && errno != EINTR) {
			/* ENOMEM: try again rather than abandon the command. */
			warnx("poll: %s", strerror(errno));
			struct timespec pause = { 0, 10 * 1000 * 1000 };
			nanosleep(&pause, NULL);
			continue;
		}
		if (p[0].revents)
			handle_signals(sfd);
		for (int i = 0; i < 2; i++)
			if (p[i + 1].revents && streams[i].fd >= 0)
				stream_read(&streams[i]);
		flush_idle();
		if (child_done)
			finish(errpipe);
	}
}

/* corral_pid1_main is called by the constructor in init_linux.go with the
 * process's arguments (glibc passes them to constructors). */
void corral_pid1_main(int argc, char **argv);
void corral_pid1_main(int argc, char **argv)
{
	const char *spec = getenv(ENV_NAME);
	int out[2] = { -1, -1 }, err[2] = { -1, -1 }, ep[2];
	sigset_t all;

	if (spec == NULL)
		return; /* not an init: let corral run */

	/* From here on this process is the init and never returns to Go. */
	std_fds();
	parse_config(spec);
	if (argc < 2 || argv == NULL || argv[1] == NULL)
		die("no command to run");
	if (unsetenv(ENV_NAME) != 0)
		die("unsetenv %s: %s", ENV_NAME, strerror(errno));

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		fail(errno, "prctl(PR_SET_DUMPABLE)");
	if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
		fail(errno, "prctl(PR_SET_CHILD_SUBREAPER)");

	sigfillset(&all);
	if (sigprocmask(SIG_SETMASK, &all, NULL) != 0)
		fail(errno, "block signals");
	int sfd = signalfd(-1, &all, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0)
		fail(errno, "signalfd");

	if (cfg.logdir >= 0) {
		if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
			fail(errno, "pipe");
		if (fcntl(out[0], F_SETFL, O_NONBLOCK) != 0 || fcntl(err[0], F_SETFL, O_NONBLOCK) != 0)
			fail(errno, "set pipe non-blocking");
		if (log_open() != 0) /* not fatal: tried again at the first line */
			warnx("open %s: %s", LOG_NAME, strerror(errno));
	}
	if (pipe2(ep, O_CLOEXEC) != 0)
		fail(errno, "pipe");

	child = fork();
	if (child < 0)
		fail(errno, "fork");
	if (child == 0)
		run_child(argv + 1, ep[1], out[1], err[1]);

	xclose(ep[1]);
	if (cfg.logdir >= 0) {
		xclose(out[1]);
		xclose(err[1]);
		streams[0].fd = out[0];
		streams[1].fd = err[0];
	}
	if (cfg.seccomp >= 0)
		xclose(cfg.seccomp);
	write_status("running %d\n", (int)child);
	supervise(sfd, ep[0]);
}
