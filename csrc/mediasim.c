/*
 * mediasim: stands in for FreeSWITCH. Built from the library mod_ai_stream
 * uses (ss_stream.c), it attaches to the daemon's pool, opens N calls and,
 * on a real-time 20 ms tick, does per call what the module's hooks do:
 * writes one caller frame (read hook), takes one frame of TTS (write-replace
 * bug: nothing queued leaves the outgoing frame as it was, silence here),
 * writes that frame as the outbound track, and records it. Control messages
 * from the daemon go to stdout as JSON lines; a JSON summary line ends the run.
 * It never waits on the daemon once calls run: a stalled daemon only makes
 * the rings drop their oldest frames.
 *
 * Caller audio (--source), for call i (the number in its uuid, "sim-0007"
 * is i = 7), frame s (0-based per call; it is the record's seq in the ring,
 * since every tick writes one frame) and sample k of that frame, with
 * spf = rate * ptime / 1000 samples per frame and n = s * spf + k:
 *   pattern   (i * 7919 + s * 131 + k * 17) & 0x7fff   (exact integers, so 0..32767)
 *   tone      lround(8000 * sin(2 * pi * ((f * n) mod rate) / rate)), f = 440 + 20 * (i mod 32) Hz
 *   FILE.wav  wav[n mod wav_samples]: the file looped, 16-bit mono at --rate
 *
 * stdout, one JSON object a line (stderr has the diagnostics):
 *   {"uuid":"sim-0001","type":"hangup","data":"NORMAL_CLEARING"}
 *       type: hangup, transfer, event, mark, error (unknown for anything else);
 *       data: the message text, invalid UTF-8 replaced by U+FFFD
 *   {"uuid":"sim-0001","type":"send_dtmf","data":"12#","duration_ms":100}
 *       DTMF the AI server plays into the call: digits, then ms per digit
 *   {"summary":true,"calls":C,"frames_written":F,"silence_frames":S,"tts_frames":T,
 *    "tts_underruns":U,"dropped":D,"late_ticks":L,"max_late_us":M}
 *       C calls opened (churn included), F frames accepted by the up rings (all
 *       tracks), S of them silence records (--cng), T ticks that played TTS, U of them only partly, D frames the up
 *       rings dropped, L ticks that started over half a frame late, M the latest.
 *
 * Exit codes: 0 done (or SIGINT/SIGTERM), 1 a recording failed, 2 bad
 * arguments, 3 pool or daemon problems.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "ss_stream.h"
#include "ss_wav.h"

enum { EXIT_IO = 1, EXIT_ARGS = 2, EXIT_POOL = 3 };

#define SPF_MAX       (SS_FRAME_BYTES_MAX / 2)
#define CTL_PER_TICK  16    /* a flooding daemon cannot starve the other calls */
#define POLL_NS       20000000ull
#define TONE_AMP      8000

static struct opts {
    const char *pool, *target, *prefix, *source, *record, *payload, *dtmf;
    const char *metadata, *caller, *callee;
    uint32_t calls, rate, ptime, req_rate, tracks, stagger_ms, end;
    uint32_t talk_ms, cng_ms;   /* --cng: talk this long, then send nothing this long */
    double seconds, call_seconds, wait_daemon;
    int churn, spread;
    int without_daemon;         /* --start-without-daemon: open calls with no live heartbeat */
} o = {
    .pool = "/dev/shm/smartstream.pool", .target = "127.0.0.1:50051", .prefix = "sim",
    .source = "tone", .calls = 3, .rate = 16000, .ptime = 20, .tracks = SS_TRACKS_MASK_IN,
    .seconds = 10, .wait_daemon = 5, .end = SS_END_HANGUP,
};

enum line_state { LINE_WAITING, LINE_LIVE, LINE_DONE };

/* One simulated phone line: a call, and with --churn the calls after it. */
typedef struct line {
    enum line_state state;
    ss_stream st;
    uint32_t num;               /* i in the uuid */
    char uuid[SS_UUID_MAX];
    uint64_t open_tick;         /* WAITING: first tick to try */
    uint64_t failing_since;     /* WAITING: first failed open, 0 if none */
    uint64_t s;                 /* LIVE: frames so far */
    int write_failed;           /* a failed write is reported once a call */
    FILE *rec;
} line;

static struct {
    uint64_t calls, frames_written, silence_frames, tts_frames, tts_underruns, dropped, late_ticks,
        max_late_us;
} stats;

static volatile sig_atomic_t stop;
static int status;              /* exit code once the run ends */
static uint32_t spf, next_num;
static uint64_t period_ns, call_ticks;
static int16_t *wav;            /* --source FILE.wav */
static size_t wav_len;
static int16_t *sine;           /* --source tone: one second of a 1 Hz sine */
static ss_pool pool;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void vsay(const char *fmt, va_list ap, const char *tail)
{
    fputs("mediasim: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(tail, stderr);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap, "\n");
    va_end(ap);
}

/* The exit code: the first problem's code wins. */
static void set_status(int code)
{
    if (!status)
        status = code;
}

static void quit(int code)
{
    set_status(code);
    stop = 1;
}

/* Caller audio: see the formulas at the top. Running indexes, no division per sample. */
static void fill_frame(const line *l, int16_t *pcm)
{
    uint64_t n0 = l->s * spf;
    if (wav) {
        size_t at = n0 % wav_len;
        for (uint32_t k = 0; k < spf; k++, at = at + 1 == wav_len ? 0 : at + 1)
            pcm[k] = wav[at];
    } else if (sine) {
        uint32_t f = 440 + 20 * (l->num % 32), at = (uint32_t)(f * n0 % o.rate);
        for (uint32_t k = 0; k < spf; k++, at = at + f >= o.rate ? at + f - o.rate : at + f)
            pcm[k] = sine[at];
    } else {
        uint32_t v = l->num * 7919u + (uint32_t)l->s * 131u; /* mod 2^32 keeps the low 15 bits exact */
        for (uint32_t k = 0; k < spf; k++, v += 17u)
            pcm[k] = (int16_t)(v & 0x7fff);
    }
}

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if there is none. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!len || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    /* overlong forms, UTF-16 surrogates, past U+10FFFF */
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) ||
        (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))
        return 0;
    return len;
}

/* A JSON string: the daemon's text is meant to be UTF-8, but stdout must stay
 * valid JSON whatever arrives, so bad bytes become U+FFFD. */
static void json_string(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = utf8_seq((const unsigned char *)s + i, n - i);
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\u%04x", c);
        else if (len)
            fwrite(s + i, 1, len, stdout);
        else
            fputs("\\ufffd", stdout);
        i += len ? len : 1;
    }
    putchar('"');
}

static const char *ctl_name(uint16_t type)
{
    switch (type) {
    case SS_CTL_HANGUP: return "hangup";
    case SS_CTL_TRANSFER: return "transfer";
    case SS_CTL_EVENT: return "event";
    case SS_CTL_MARK: return "mark";
    case SS_CTL_ERROR: return "error";
    case SS_CTL_SEND_DTMF: return "send_dtmf";
    }
    return "unknown";
}

static void name_line(line *l, uint32_t num)
{
    l->num = num;
    snprintf(l->uuid, sizeof l->uuid, "%s-%04u", o.prefix, num);
}

static void try_open(line *l, uint64_t now)
{
    char err[256];
    ss_call call = {
        .uuid = l->uuid, .target = o.target, .codec = "L16", .channel_rate = o.rate,
        .metadata = o.metadata, .caller = o.caller, .callee = o.callee,
        .requested_rate = o.req_rate, .tracks = o.tracks,
    };
    int rc = ss_stream_open_ex(&pool, &call, o.without_daemon ? SS_OPEN_WITHOUT_DAEMON : 0, &l->st,
                               err, sizeof err);
    if (rc == SS_OK) {
        l->state = LINE_LIVE;
        l->s = 0;
        l->write_failed = 0;
        l->failing_since = 0;
        stats.calls++;
        if (o.record) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s.wav", o.record, l->uuid);
            if (!(l->rec = ss_wav_begin(path))) {
                say("%s: cannot record to %s: %s", l->uuid, path, strerror(errno));
                set_status(EXIT_IO);
            }
        }
        return;
    }
    if (rc != SS_E_NODAEMON && rc != SS_E_NOSLOT) {
        say("%s: cannot open: %s", l->uuid, err);
        quit(rc == SS_E_ARG ? EXIT_ARGS : EXIT_POOL);
        return;
    }
    /* No daemon, or no free slot yet (the daemon frees a closed one after StreamEnd). */
    if (!l->failing_since) {
        l->failing_since = now;
        say("%s: cannot open yet: %s; retrying for %g s", l->uuid, err, o.wait_daemon);
    }
    if (now - l->failing_since >= (uint64_t)(o.wait_daemon * 1e9)) {
        say("%s: giving up: %s", l->uuid, err);
        quit(EXIT_POOL);
    }
}

/* The call ends as --end says (a hangup, or uuid_ai_stream stop): the slot
 * goes CLOSING and the daemon (or, if none runs, the next one) sends
 * StreamEnd with that reason and frees it.
 * The drop counters are read first: once freed, the slot is someone else's. */
static void close_call(line *l)
{
    ss_slot *slot = l->st.slot;
    stats.dropped += atomic_load(&slot->up[SS_TRACK_IN].dropped) +
                     atomic_load(&slot->up[SS_TRACK_OUT].dropped);
    int rc = ss_stream_close(&l->st, o.end);
    if (rc)
        say("%s: close: %s", l->uuid, ss_strerror(rc));
    if (l->rec && ss_wav_finish(l->rec, o.rate, l->s * spf)) {
        say("%s: recording: %s", l->uuid, strerror(errno));
        set_status(EXIT_IO);
    }
    l->rec = NULL;
    l->state = LINE_DONE;
}

static void end_call(line *l, uint64_t tick)
{
    close_call(l);
    if (o.churn) {
        name_line(l, next_num++);
        l->state = LINE_WAITING;
        l->open_tick = tick + 1;
    }
}

/* pcm NULL: the phone sent nothing (CNG); the module writes a silence record. */
static void write_track(line *l, unsigned track, uint64_t now, const int16_t *pcm)
{
    int rc = pcm ? ss_stream_write(&l->st, track, now, pcm, spf)
                 : ss_stream_write_silence(&l->st, track, now, spf);
    stats.silence_frames += !pcm && rc == SS_OK;
    if (rc == SS_OK) {
        stats.frames_written++;
    } else if (!l->write_failed) {
        l->write_failed = 1;
        say("%s: write: %s", l->uuid, ss_strerror(rc));
    }
}

static void run_frame(line *l, uint64_t now)
{
    static int16_t pcm[SPF_MAX];
    if (o.tracks & SS_TRACKS_MASK_IN) {
        int quiet = o.cng_ms && l->s * o.ptime % (o.talk_ms + o.cng_ms) >= o.talk_ms;
        fill_frame(l, pcm);
        write_track(l, SS_TRACK_IN, now, quiet ? NULL : pcm);
    }
    memset(pcm, 0, spf * sizeof *pcm);
    uint32_t got = ss_stream_read_tts(&l->st, pcm, spf);
    stats.tts_frames += got > 0;
    stats.tts_underruns += got > 0 && got < spf;
    if (o.tracks & SS_TRACKS_MASK_OUT)
        write_track(l, SS_TRACK_OUT, now, pcm);
    if (l->rec)
        fwrite(pcm, sizeof *pcm, spf, l->rec); /* errors show in ss_wav_finish */
    l->s++;
}

/* After the first frame: what send_payload and DTMF detection would post. */
static void post_first(line *l)
{
    if (o.payload) {
        int rc = ss_stream_post(&l->st, SS_CTL_PAYLOAD, o.payload, (uint32_t)strlen(o.payload));
        if (rc)
            say("%s: payload: %s", l->uuid, ss_strerror(rc));
    }
    for (const char *d = o.dtmf; d && *d; d++) {
        uint8_t msg[5] = {(uint8_t)*d, 100, 0, 0, 0}; /* digit, then 100 ms as uint32 LE */
        int rc = ss_stream_post(&l->st, SS_CTL_DTMF, msg, sizeof msg);
        if (rc)
            say("%s: dtmf %c: %s", l->uuid, *d, ss_strerror(rc));
    }
}

/* Print what the daemon sent; returns 1 on a hangup. */
static int take_controls(line *l)
{
    static char buf[SS_CTL_MSG_MAX + 1];
    for (int i = 0; i < CTL_PER_TICK; i++) {
        uint16_t type;
        long n = ss_stream_take(&l->st, &type, buf, sizeof buf);
        if (n < 0 && n != SS_E_BUSY)
            say("%s: control ring: %s", l->uuid, ss_strerror((int)n));
        if (n < 0 || (n == 0 && type == SS_REC_PAD))   /* an empty message has a type */
            return 0;
        printf("{\"uuid\":");
        json_string(l->uuid, strlen(l->uuid));
        printf(",\"type\":\"%s\",\"data\":", ctl_name(type));
        if (type == SS_CTL_SEND_DTMF && n >= 4) {   /* uint32 LE ms, then the digits */
            const uint8_t *u = (const uint8_t *)buf;
            json_string(buf + 4, (size_t)n - 4);
            printf(",\"duration_ms\":%lu", (unsigned long)u[0] | (unsigned long)u[1] << 8 |
                   (unsigned long)u[2] << 16 | (unsigned long)u[3] << 24);
        } else {
            json_string(buf, (size_t)n);
        }
        printf("}\n");
        if (type == SS_CTL_HANGUP)
            return 1;
    }
    return 0;
}

static void run_line(line *l, uint64_t tick, uint64_t now)
{
    if (l->state == LINE_WAITING && tick >= l->open_tick)
        try_open(l, now);
    if (l->state != LINE_LIVE)
        return;
    run_frame(l, now);
    if (l->s == 1)
        post_first(l);
    if (take_controls(l) || (call_ticks && l->s >= call_ticks))
        end_call(l, tick);
}

/* Wait (up to --wait-daemon) for the pool file and a live heartbeat (only the
 * file with --start-without-daemon). A half-created pool fails validation,
 * so every error is retried until then. */
static int attach_pool(void)
{
    char err[256] = "";
    uint64_t give_up = ss_now_ns() + (uint64_t)(o.wait_daemon * 1e9);
    int attached = 0;
    for (;;) {
        if (!attached)
            attached = ss_pool_attach(o.pool, &pool, err, sizeof err) == SS_OK;
        if (attached && (o.without_daemon || ss_pool_daemon_alive(&pool, ss_now_ns())))
            return 0;
        if (attached)
            snprintf(err, sizeof err, "no daemon heartbeat in %s", o.pool);
        if (stop || ss_now_ns() >= give_up)
            break;
        struct timespec ts = {0, (long)POLL_NS};
        nanosleep(&ts, NULL);
    }
    say("%s%s", stop ? "interrupted waiting for the daemon: " : "", err);
    if (attached)
        ss_pool_detach(&pool);
    return -1;
}

static void sleep_until(uint64_t due)
{
    struct timespec ts = {(time_t)(due / 1000000000ull), (long)(due % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !stop)
        ;
}

static uint64_t ticks_for(double seconds)
{
    uint64_t t = (uint64_t)llround(seconds * 1000.0 / o.ptime);
    return seconds > 0 && !t ? 1 : t;
}

static void run(line *lines)
{
    uint64_t total = ticks_for(o.seconds), t0 = ss_now_ns();
    /* Deadlines are absolute: a late tick runs at once and none is skipped, so
     * a run of S seconds always writes S / ptime frames a call. */
    /* --spread: call i's frames at i mod ptime ms into each tick, one wake-up
     * per ms; FreeSWITCH's channels each run on their own timer phase. */
    uint32_t steps = o.spread ? o.ptime : 1;
    for (uint64_t tick = 0; !stop && (!total || tick < total); tick++) {
        for (uint32_t step = 0; step < steps && !stop; step++) {
            uint64_t due = t0 + tick * period_ns + step * period_ns / steps;
            sleep_until(due);
            if (stop)
                break;
            uint64_t now = ss_now_ns(), late_us = now > due ? (now - due) / 1000 : 0;
            /* Late: half a frame behind, where a jitter buffer starts to notice. */
            stats.late_ticks += late_us * 2000 > period_ns;
            if (late_us > stats.max_late_us)
                stats.max_late_us = late_us;
            for (uint32_t i = step; i < o.calls; i += steps)
                run_line(&lines[i], tick, now);
        }
    }
    for (uint32_t i = 0; i < o.calls; i++)
        if (lines[i].state == LINE_LIVE)
            close_call(&lines[i]);
    printf("{\"summary\":true,\"calls\":%llu,\"frames_written\":%llu,\"silence_frames\":%llu,"
           "\"tts_frames\":%llu,"
           "\"tts_underruns\":%llu,\"dropped\":%llu,\"late_ticks\":%llu,\"max_late_us\":%llu}\n",
           (unsigned long long)stats.calls, (unsigned long long)stats.frames_written,
           (unsigned long long)stats.silence_frames, (unsigned long long)stats.tts_frames, (unsigned long long)stats.tts_underruns,
           (unsigned long long)stats.dropped, (unsigned long long)stats.late_ticks,
           (unsigned long long)stats.max_late_us);
}

/* Argument parsing ------------------------------------------------------- */

static const char usage_text[] =
    "usage: mediasim [options]\n"
    "  --pool PATH           pool file the daemon created (/dev/shm/smartstream.pool)\n"
    "  --calls N             concurrent calls (3)\n"
    "  --rate HZ             channel rate: 8000 16000 24000 32000 48000 (16000)\n"
    "  --ptime MS            frame length, 1..60 (20)\n"
    "  --seconds S           run length, 0 = until SIGINT/SIGTERM (10)\n"
    "  --target HOST:PORT    AI server for every call (127.0.0.1:50051)\n"
    "  --sample-rate HZ      rate the AI server wants, 0 = channel rate (0)\n"
    "  --tracks in|out|both  tracks to stream (in)\n"
    "  --uuid-prefix STR     call i is STR-%04u (sim)\n"
    "  --source SRC          tone | pattern | FILE.wav, 16-bit mono at --rate (tone)\n"
    "  --record DIR          write what each caller heard to DIR/<uuid>.wav\n"
    "  --payload JSON        send_payload once per call after its first frame\n"
    "  --dtmf DIGITS         DTMF digits (0-9 * # A-D), 100 ms each, after the first frame\n"
    "  --metadata JSON       StreamStart.metadata of every call (uuid_ai_stream metadata=)\n"
    "  --caller NUM          caller id number; --callee NUM: destination number\n"
    "  --wait-daemon S       how long to retry a missing daemon or a full pool (5)\n"
    "  --start-without-daemon  open the calls even while no daemon runs (the pool file must\n"
    "                        exist: a stopped or lost daemon's); their rings keep the audio\n"
    "  --stagger MS          delay between opening consecutive calls (0)\n"
    "  --spread              each call on its own phase: call i's frames i mod ptime ms\n"
    "                        into each tick (default: every call's at the tick)\n"
    "  --call-seconds S      each call hangs up after S seconds (whole run)\n"
    "  --churn               a line whose call ended starts a new call, new uuid\n"
    "  --end hangup|stop     how calls end, as the AI server's StreamEnd says (hangup)\n"
    "  --cng TALK:QUIET      caller suppresses silence: TALK ms of audio, then QUIET ms of\n"
    "                        nothing (CNG), written as silence records as the module does\n";

static void bad_arg(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void bad_arg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap, " (see --help)\n");
    va_end(ap);
    exit(EXIT_ARGS);
}

static uint32_t arg_u32(const char *name, const char *s, uint32_t lo, uint32_t hi)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
        bad_arg("--%s: expected an integer %u..%u, got '%s'", name, lo, hi, s);
    return (uint32_t)v;
}

static double arg_secs(const char *name, const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0 && v <= 1e7))
        bad_arg("--%s: expected seconds >= 0, got '%s'", name, s);
    return v;
}

static void arg_cng(const char *s)
{
    unsigned talk, quiet;
    char end;
    if (sscanf(s, "%u:%u%c", &talk, &quiet, &end) != 2 || !talk || !quiet || talk > 3600000 ||
        quiet > 3600000)
        bad_arg("--cng: expected TALK:QUIET in ms, both 1..3600000, got '%s'", s);
    o.talk_ms = talk;
    o.cng_ms = quiet;
}

static uint32_t arg_tracks(const char *s)
{
    if (!strcmp(s, "in"))
        return SS_TRACKS_MASK_IN;
    if (!strcmp(s, "out"))
        return SS_TRACKS_MASK_OUT;
    if (!strcmp(s, "both"))
        return SS_TRACKS_MASK_IN | SS_TRACKS_MASK_OUT;
    bad_arg("--tracks: expected in, out or both, got '%s'", s);
}

static uint32_t arg_end(const char *s)
{
    if (!strcmp(s, "hangup"))
        return SS_END_HANGUP;
    if (!strcmp(s, "stop"))
        return SS_END_STOP;
    bad_arg("--end: expected hangup or stop, got '%s'", s);
}

static void parse_args(int argc, char **argv)
{
    enum { O_POOL = 256, O_CALLS, O_RATE, O_PTIME, O_SECONDS, O_TARGET, O_SRATE, O_TRACKS,
           O_PREFIX, O_SOURCE, O_RECORD, O_PAYLOAD, O_DTMF, O_WAIT, O_STAGGER, O_CALLSECS,
           O_CHURN, O_END, O_METADATA, O_CALLER, O_CALLEE, O_CNG, O_NODAEMON, O_SPREAD, O_HELP };
    static const struct option longopts[] = {
        {"pool", 1, 0, O_POOL}, {"calls", 1, 0, O_CALLS}, {"rate", 1, 0, O_RATE},
        {"ptime", 1, 0, O_PTIME}, {"seconds", 1, 0, O_SECONDS}, {"target", 1, 0, O_TARGET},
        {"sample-rate", 1, 0, O_SRATE}, {"tracks", 1, 0, O_TRACKS},
        {"uuid-prefix", 1, 0, O_PREFIX}, {"source", 1, 0, O_SOURCE}, {"record", 1, 0, O_RECORD},
        {"payload", 1, 0, O_PAYLOAD}, {"dtmf", 1, 0, O_DTMF}, {"wait-daemon", 1, 0, O_WAIT},
        {"stagger", 1, 0, O_STAGGER}, {"call-seconds", 1, 0, O_CALLSECS},
        {"churn", 0, 0, O_CHURN}, {"end", 1, 0, O_END}, {"metadata", 1, 0, O_METADATA},
        {"caller", 1, 0, O_CALLER}, {"callee", 1, 0, O_CALLEE}, {"cng", 1, 0, O_CNG},
        {"start-without-daemon", 0, 0, O_NODAEMON}, {"spread", 0, 0, O_SPREAD},
        {"help", 0, 0, O_HELP}, {0, 0, 0, 0},
    };
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        const char *a = optarg;
        switch (ch) {
        case O_POOL: o.pool = a; break;
        case O_CALLS: o.calls = arg_u32("calls", a, 1, SS_SLOTS_MAX); break;
        case O_RATE: o.rate = arg_u32("rate", a, 8000, 48000); break; /* the set: check_args */
        case O_PTIME: o.ptime = arg_u32("ptime", a, 1, 60); break;
        case O_SECONDS: o.seconds = arg_secs("seconds", a); break;
        case O_TARGET: o.target = a; break;
        case O_SRATE: o.req_rate = arg_u32("sample-rate", a, 0, 48000); break;
        case O_TRACKS: o.tracks = arg_tracks(a); break;
        case O_PREFIX: o.prefix = a; break;
        case O_SOURCE: o.source = a; break;
        case O_RECORD: o.record = a; break;
        case O_PAYLOAD: o.payload = a; break;
        case O_DTMF: o.dtmf = a; break;
        case O_WAIT: o.wait_daemon = arg_secs("wait-daemon", a); break;
        case O_STAGGER: o.stagger_ms = arg_u32("stagger", a, 0, 3600000); break;
        case O_SPREAD: o.spread = 1; break;
        case O_CALLSECS: o.call_seconds = arg_secs("call-seconds", a); break;
        case O_CHURN: o.churn = 1; break;
        case O_END: o.end = arg_end(a); break;
        case O_METADATA: o.metadata = a; break;
        case O_CALLER: o.caller = a; break;
        case O_CALLEE: o.callee = a; break;
        case O_CNG: arg_cng(a); break;
        case O_NODAEMON: o.without_daemon = 1; break;
        case O_HELP: fputs(usage_text, stdout); exit(0);
        default: bad_arg("unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        bad_arg("unexpected argument '%s'", argv[optind]);
}

static void check_args(void)
{
    if (o.rate != 8000 && o.rate != 16000 && o.rate != 24000 && o.rate != 32000 && o.rate != 48000)
        bad_arg("--rate: expected 8000, 16000, 24000, 32000 or 48000, got %u", o.rate);
    if (o.req_rate && o.req_rate < 8000)
        bad_arg("--sample-rate: expected 0 or 8000..48000, got %u", o.req_rate);
    if (!*o.target || strlen(o.target) >= SS_TARGET_MAX)
        bad_arg("--target: expected host:port shorter than %d bytes", SS_TARGET_MAX);
    /* the widest uuid: prefix, '-', ten digits, NUL */
    if (!*o.prefix || strlen(o.prefix) + 12 > SS_UUID_MAX)
        bad_arg("--uuid-prefix: expected 1..%d characters", SS_UUID_MAX - 12);
    if (o.payload && strlen(o.payload) > SS_CTL_MSG_MAX)
        bad_arg("--payload: longer than %u bytes", SS_CTL_MSG_MAX);
    if (o.dtmf && (!*o.dtmf || strspn(o.dtmf, "0123456789*#ABCDabcd") != strlen(o.dtmf)))
        bad_arg("--dtmf: expected digits 0-9 * # A-D, got '%s'", o.dtmf);
    if (o.churn && !o.call_seconds)
        say("--churn without --call-seconds: only a daemon hangup starts a new call");
}

static void load_source(void)
{
    if (!strcmp(o.source, "pattern"))
        return;
    if (!strcmp(o.source, "tone")) {
        if (!(sine = malloc(o.rate * sizeof *sine)))
            bad_arg("out of memory");
        for (uint32_t j = 0; j < o.rate; j++)
            sine[j] = (int16_t)lround(TONE_AMP * sin(2 * M_PI * j / o.rate));
        return;
    }
    char err[512];
    uint32_t rate;
    if (ss_wav_load(o.source, &wav, &wav_len, &rate, err, sizeof err))
        bad_arg("--source: %s", err);
    if (rate != o.rate)
        bad_arg("--source: %s is %u Hz, but --rate is %u", o.source, rate, o.rate);
}

static void check_record_dir(void)
{
    struct stat st;
    if (!o.record)
        return;
    if (mkdir(o.record, 0777) && errno != EEXIST)
        bad_arg("--record: cannot create %s: %s", o.record, strerror(errno));
    if (stat(o.record, &st) || !S_ISDIR(st.st_mode) || access(o.record, W_OK | X_OK))
        bad_arg("--record: %s is not a writable directory", o.record);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    check_args();
    load_source();
    check_record_dir();
    spf = o.rate / 1000 * o.ptime;
    period_ns = (uint64_t)o.ptime * 1000000ull;
    call_ticks = ticks_for(o.call_seconds);

    /* No SA_RESTART: a signal must cut the tick's sleep short. A closed stdout
     * must not kill us before the calls are closed. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    line *lines = calloc(o.calls, sizeof *lines);
    if (!lines)
        bad_arg("out of memory for %u calls", o.calls);
    if (attach_pool())
        return EXIT_POOL;
    for (uint32_t i = 0; i < o.calls; i++) {
        name_line(&lines[i], i);
        /* the stagger, rounded up to whole ticks */
        lines[i].open_tick = ((uint64_t)i * o.stagger_ms + o.ptime - 1) / o.ptime;
    }
    next_num = o.calls;
    run(lines);
    ss_pool_detach(&pool);
    free(lines);
    free(wav);
    free(sine);
    return status;
}
