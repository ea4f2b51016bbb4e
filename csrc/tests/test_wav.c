/* test_wav.c: the simulator's WAV reader and writer. */
#include <stdio.h>
#include <stdlib.h>
#include "check.h"
#include "ss_wav.h"

static void put_le(uint8_t *p, uint32_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* One chunk at at: id, size (declared, which may lie), body, pad byte. Returns its bytes. */
static size_t chunk(uint8_t *at, const char *id, uint32_t declared, const void *body, uint32_t len)
{
    memcpy(at, id, 4);
    put_le(at + 4, declared, 4);
    memcpy(at + 8, body, len);
    if (len & 1)
        at[8 + len] = 0;
    return 8 + len + (len & 1);
}

static void fmt_body(uint8_t *b, uint32_t format, uint32_t channels, uint32_t rate, uint32_t bits)
{
    put_le(b, format, 2);
    put_le(b + 2, channels, 2);
    put_le(b + 4, rate, 4);
    put_le(b + 8, rate * channels * bits / 8, 4);
    put_le(b + 12, channels * bits / 8, 2);
    put_le(b + 14, bits, 2);
}

/* Write RIFF/WAVE around the given chunks to the named scratch file; path gets its path. */
static void write_wav(char *path, const char *name, const uint8_t *chunks, size_t len)
{
    uint8_t head[12];
    memcpy(head, "RIFF", 4);
    put_le(head + 4, (uint32_t)(4 + len), 4);
    memcpy(head + 8, "WAVE", 4);
    check_path(path, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK_EQ(fwrite(head, 1, sizeof head, f), sizeof head);
    CHECK_EQ(fwrite(chunks, 1, len, f), len);
    CHECK_EQ(fclose(f), 0);
}

static void expect_load_error(const char *path, const char *why)
{
    char err[512] = "", want[512];
    int16_t *pcm = NULL;
    size_t n;
    uint32_t rate;
    CHECK_EQ(ss_wav_load(path, &pcm, &n, &rate, err, sizeof err), -1);
    CHECK(pcm == NULL);
    snprintf(want, sizeof want, "%s: %s", path, why);
    CHECK_STR(err, want);
}

/* path loads as exactly these samples at this rate. */
static void expect_loads(const char *path, const int16_t *pcm, size_t samples, uint32_t rate)
{
    char err[256] = "";
    int16_t *out;
    size_t n;
    uint32_t got_rate;
    CHECK_EQ(ss_wav_load(path, &out, &n, &got_rate, err, sizeof err), 0);
    int same = n == samples && !memcmp(out, pcm, samples * 2);
    free(out);
    CHECK_STR(err, "");
    CHECK_EQ(got_rate, rate);
    CHECK_EQ(n, samples);
    CHECK(same);
}

static void test_wav_round_trip(void)
{
    char path[CHECK_PATH_MAX];
    int16_t in[1000];
    for (int i = 0; i < 1000; i++)
        in[i] = (int16_t)(i * 67 - 30000);
    check_path(path, "rt.wav");
    FILE *f = ss_wav_begin(path);
    CHECK(f != NULL);
    CHECK_EQ(fwrite(in, 2, 1000, f), 1000);
    CHECK_EQ(ss_wav_finish(f, 8000, 1000), 0);

    uint8_t want[44], got[44];
    uint8_t fmt[16];
    fmt_body(fmt, 1, 1, 8000, 16);
    memcpy(want, "RIFF", 4);
    put_le(want + 4, 36 + 2000, 4);
    memcpy(want + 8, "WAVE", 4);
    chunk(want + 12, "fmt ", 16, fmt, 16);
    memcpy(want + 36, "data", 4);
    put_le(want + 40, 2000, 4);
    f = fopen(path, "rb");
    CHECK(f != NULL);
    CHECK_EQ(fread(got, 1, sizeof got, f), sizeof got);
    CHECK_EQ(fseek(f, 0, SEEK_END), 0);
    CHECK_EQ(ftell(f), 44 + 2000);
    fclose(f);
    CHECK_MEM(got, want, sizeof want);
    expect_loads(path, in, 1000, 8000);
}

/* Other writers add chunks (LIST, fact) and a longer fmt; odd sizes are padded. */
static void test_wav_load_skips_other_chunks(void)
{
    char path[CHECK_PATH_MAX];
    uint8_t buf[256], fmt[18] = {0};
    int16_t pcm[3] = {-1, 2, -3};
    size_t len = 0;
    fmt_body(fmt, 1, 1, 16000, 16);
    len += chunk(buf + len, "LIST", 3, "abc", 3);
    len += chunk(buf + len, "fmt ", 18, fmt, 18);
    len += chunk(buf + len, "fact", 4, "\4\0\0\0", 4);
    len += chunk(buf + len, "data", 6, pcm, 6);
    write_wav(path, "chunks.wav", buf, len);
    expect_loads(path, pcm, 3, 16000);
}

/* A data size past the end of the file (a writer that died): play what is there. */
static void test_wav_load_cut_off_file(void)
{
    char path[CHECK_PATH_MAX];
    uint8_t buf[128], fmt[16];
    int16_t pcm[5] = {1, 2, 3, 4, 5};
    size_t len = 0;
    fmt_body(fmt, 1, 1, 8000, 16);
    len += chunk(buf + len, "fmt ", 16, fmt, 16);
    len += chunk(buf + len, "data", 2000, pcm, 10);
    write_wav(path, "cut.wav", buf, len);
    expect_loads(path, pcm, 5, 8000);
}

/* fmt as given, then data_bytes of data: refused with why. */
static void expect_refused(const char *name, uint32_t format, uint32_t channels, uint32_t bits,
                           uint32_t data_bytes, const char *why)
{
    char path[CHECK_PATH_MAX];
    uint8_t buf[64], fmt[16], pcm[8] = {0};
    fmt_body(fmt, format, channels, 8000, bits);
    size_t len = chunk(buf, "fmt ", 16, fmt, 16);
    len += chunk(buf + len, "data", data_bytes, pcm, data_bytes);
    write_wav(path, name, buf, len);
    expect_load_error(path, why);
}

static void test_wav_load_rejects(void)
{
    char path[CHECK_PATH_MAX];
    uint8_t buf[64], fmt[16];
    int16_t pcm[4] = {0};

    expect_refused("stereo.wav", 1, 2, 16, 8, "format 1, 2 channel(s), 16 bits: need PCM (1), mono, 16 bits");
    expect_refused("float.wav", 3, 1, 32, 8, "format 3, 1 channel(s), 32 bits: need PCM (1), mono, 16 bits");
    expect_refused("empty.wav", 1, 1, 16, 1, "no samples");

    fmt_body(fmt, 1, 1, 8000, 16);
    write_wav(path, "nodata.wav", buf, chunk(buf, "fmt ", 16, fmt, 16));
    expect_load_error(path, "no data chunk");
    write_wav(path, "nofmt.wav", buf, chunk(buf, "data", 8, pcm, 8));
    expect_load_error(path, "no fmt chunk");

    check_path(path, "text.wav");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("RIFX this is not a wav file", f);
    fclose(f);
    expect_load_error(path, "not a RIFF/WAVE file");

    check_path(path, "missing.wav");
    expect_load_error(path, "No such file or directory");
}

const check_case wav_cases[] = {
    CASE(test_wav_round_trip),
    CASE(test_wav_load_skips_other_chunks),
    CASE(test_wav_load_cut_off_file),
    CASE(test_wav_load_rejects),
    {0, 0},
};
