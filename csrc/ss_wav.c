/* ss_wav.c: RIFF/WAVE for PCM16 mono, see ss_wav.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "ss_wav.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "samples are copied as they are: WAV and this host must agree on byte order"
#endif

#define WAV_HDR 44u
#define WAV_DATA_MAX (0xffffffffu - 36u) /* riff_size must fit 32 bits */

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16; }

/* The whole file in memory: sources are short loops, and it keeps parsing to bounds checks. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
        errno = EIO;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int ss_wav_load(const char *path, int16_t **pcm, size_t *samples, uint32_t *rate, char *err,
                size_t errlen)
{
    size_t n;
    uint8_t *b = slurp(path, &n);
    if (!b)
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    const uint8_t *fmt = NULL, *data = NULL;
    size_t data_len = 0;
    int rc = -1;
    if (n < 12 || memcmp(b, "RIFF", 4) || memcmp(b + 8, "WAVE", 4)) {
        fail(err, errlen, "%s: not a RIFF/WAVE file", path);
        goto out;
    }
    /* Chunks are id, size, body padded to an even length; unknown ones are skipped. */
    for (size_t pos = 12; pos + 8 <= n;) {
        size_t size = le32(b + pos + 4), body = pos + 8, avail = n - body;
        if (!memcmp(b + pos, "fmt ", 4) && size >= 16 && size <= avail) {
            fmt = b + body;
        } else if (!memcmp(b + pos, "data", 4)) {
            data = b + body;
            data_len = size < avail ? size : avail; /* a cut-off file plays what it has */
        }
        pos = body + size + (size & 1);
    }
    if (!fmt || !data) {
        fail(err, errlen, "%s: no %s chunk", path, fmt ? "data" : "fmt");
        goto out;
    }
    uint16_t format = le16(fmt), channels = le16(fmt + 2), bits = le16(fmt + 14);
    if (format != 1 || channels != 1 || bits != 16) {
        fail(err, errlen, "%s: format %u, %u channel(s), %u bits: need PCM (1), mono, 16 bits",
             path, format, channels, bits);
        goto out;
    }
    if (data_len < 2) {
        fail(err, errlen, "%s: no samples", path);
        goto out;
    }
    *samples = data_len / 2;
    *rate = le32(fmt + 4);
    if (!(*pcm = malloc(*samples * 2))) {
        fail(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    memcpy(*pcm, data, *samples * 2);
    rc = 0;
out:
    free(b);
    return rc;
}

static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v); put16(p + 2, v >> 16); }

static int write_header(FILE *f, uint32_t rate, uint32_t data_bytes)
{
    uint8_t h[WAV_HDR];
    memcpy(h, "RIFF", 4);
    put32(h + 4, 36 + data_bytes);
    memcpy(h + 8, "WAVEfmt ", 8);
    put32(h + 16, 16);          /* fmt body size */
    put16(h + 20, 1);           /* PCM */
    put16(h + 22, 1);           /* mono */
    put32(h + 24, rate);
    put32(h + 28, rate * 2);    /* byte rate */
    put16(h + 32, 2);           /* block align */
    put16(h + 34, 16);          /* bits */
    memcpy(h + 36, "data", 4);
    put32(h + 40, data_bytes);
    return fwrite(h, sizeof h, 1, f) == 1 ? 0 : -1;
}

FILE *ss_wav_begin(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (f && write_header(f, 0, 0)) {
        fclose(f);
        return NULL;
    }
    return f;
}

int ss_wav_finish(FILE *f, uint32_t rate, uint64_t samples)
{
    /* Past 4 GiB the sizes say as much as fits; readers then stop early. */
    uint32_t bytes = samples * 2 > WAV_DATA_MAX ? WAV_DATA_MAX & ~1u : (uint32_t)(samples * 2);
    int rc = fflush(f) || fseek(f, 0, SEEK_SET) || write_header(f, rate, bytes) || ferror(f);
    return fclose(f) || rc ? -1 : 0;
}
