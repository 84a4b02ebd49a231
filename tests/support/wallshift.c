/* Shifts the wall clock of the processes it is preloaded into, and nothing else.
 *
 * LD_PRELOAD=wallshift.so WALLSHIFT_FILE=/path: the file holds an offset in seconds (e.g.
 * 34560000 for +400 days, -3600 for an hour back); it is read again at most every 0.2 s, so a
 * test sets the clock of a running process tree by rewriting it. Only CLOCK_REALTIME and its
 * variants move: the monotonic clock, timers and sleeps stay real, as when NTP or a user sets
 * the clock of a real machine. (libfaketime 0.9.10 either moves the monotonic clock too or, with
 * FAKETIME_DONT_FAKE_MONOTONIC, makes Python's time.sleep fail with EINVAL.)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static double offset;
static struct timespec checked;

static void refresh(void) {
    struct timespec now;
    if (!real_clock_gettime)
        real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    real_clock_gettime(CLOCK_MONOTONIC, &now);
    double since = (now.tv_sec - checked.tv_sec) + (now.tv_nsec - checked.tv_nsec) / 1e9;
    if (checked.tv_sec != 0 && since < 0.2)
        return;
    checked = now;
    const char *path = getenv("WALLSHIFT_FILE");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (f) {
        double value;
        if (fscanf(f, "%lf", &value) == 1)
            offset = value;
        fclose(f);
    }
}

static void shift(struct timespec *ts) {
    long long ns = (long long)(offset * 1e9);
    long long total = ts->tv_nsec + ns % 1000000000LL;
    ts->tv_sec += ns / 1000000000LL + total / 1000000000LL;
    ts->tv_nsec = total % 1000000000LL;
    if (ts->tv_nsec < 0) {
        ts->tv_nsec += 1000000000LL;
        ts->tv_sec -= 1;
    }
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    refresh();
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        shift(ts);
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0 && tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
