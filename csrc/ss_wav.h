/* ss_wav.h: just enough WAV for the media simulator: 16-bit mono PCM in
 * (a source to loop) and out (what a caller heard). Host byte order is
 * little-endian, as WAV's is (checked at compile time in ss_wav.c). */
#ifndef SS_WAV_H
#define SS_WAV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Read every sample of a 16-bit mono PCM WAV into *pcm (malloc'd, at least
 * one sample) and its rate into *rate. Returns 0, or -1 with the reason in err. */
int ss_wav_load(const char *path, int16_t **pcm, size_t *samples, uint32_t *rate, char *err,
                size_t errlen);

/* Open path for writing with a placeholder header; append samples with
 * fwrite; ss_wav_finish writes the real header and closes. Both return
 * NULL / -1 with errno set on failure. */
FILE *ss_wav_begin(const char *path);
int ss_wav_finish(FILE *f, uint32_t rate, uint64_t samples);

#endif /* SS_WAV_H */
