/*
 * ss_layout.h: the shared-memory layout between mod_ai_stream (FreeSWITCH)
 * and the smartstream daemon. This header is the single source of truth:
 * the C library, the module and smartstream/_ring.pyx all include it.
 * Change anything here and bump SS_LAYOUT_VERSION.
 *
 * One pool file, /run/smartstream/smartstream.pool by default, created by the daemon:
 *
 *   [ss_pool_hdr, padded to 4 KiB][slot 0][slot 1]...[slot N-1]
 *
 * A slot belongs to one call at a time. It carries the call header and six
 * single-producer/single-consumer rings:
 *
 *   up[IN]   caller audio       module read hook  -> daemon   (records)
 *   up[OUT]  audio to caller    module write bug  -> daemon   (records)
 *   down     TTS PCM            daemon -> module write bug    (bytes)
 *   ctl_in   payload, DTMF      module -> daemon              (records)
 *   ctl_out  hangup, transfer,  daemon -> module              (records)
 *            event, mark, error,
 *            send_dtmf
 *
 * Inbound and outbound audio get separate rings because FreeSWITCH may read
 * and write one session from different threads: one ring, one producer.
 */
#ifndef SS_LAYOUT_H
#define SS_LAYOUT_H

#include <stddef.h>
#include <stdint.h>
#ifndef __cplusplus
#include <stdatomic.h>
#define SS_ATOMIC(t) _Atomic t
#else
#define SS_ATOMIC(t) t
#endif

#define SS_POOL_MAGIC      0x4c4f4f504d545353ULL /* "SSTMPOOL" read little-endian */
#define SS_LAYOUT_VERSION  4u
#define SS_CACHELINE       64
#define SS_POOL_HDR_BYTES  4096
#define SS_PAGE            4096u          /* ring data starts on its own page */

/* Ring capacities in bytes, powers of two (positions are masked, never divided).
 * A slot has room for the largest; a call uses what its channel rate needs
 * (ss_up_bytes, ss_down_bytes below) and only those pages are allocated. */
#define SS_UP_BYTES        (256u * 1024u) /* 2.7 s of 48 kHz: what a dead daemon can catch up on */
#define SS_UP_BYTES_MIN    (64u * 1024u)
#define SS_UP_RECORDS      175u           /* 3.5 s of 20 ms frames: a daemon restart, with room */
#define SS_DOWN_BYTES      (64u * 1024u)  /* the daemon keeps only a few frames ahead */
#define SS_DOWN_BYTES_MIN  (8u * 1024u)
#define SS_CTL_BYTES       (16u * 1024u)  /* two of the largest messages */

#define SS_FRAME_BYTES_MAX 11520u         /* 120 ms of 48 kHz PCM16 mono (ss_frame_bytes_max) */
#define SS_CTL_MSG_MAX     8168u          /* largest control message payload: 8 KiB records */

#define SS_UUID_MAX        64
#define SS_TARGET_MAX      256
#define SS_NUMBER_MAX      64
#define SS_CODEC_MAX       32
#define SS_META_MAX        4096

/* The daemon stamps heartbeat_ns every tick; older than heartbeat_stale_ns
 * (which the daemon sets, default below) means it is gone. The module clamps
 * the daemon's value to MIN..MAX: a bad header cannot make loss undetectable. */
#define SS_HEARTBEAT_STALE_NS     (200000000ull)
#define SS_HEARTBEAT_STALE_MIN_NS (20000000ull)
#define SS_HEARTBEAT_STALE_MAX_NS (10000000000ull)

/* ss_pool_hdr.daemon_state: a clean exit says STOPPED, so the module can
 * report "daemon stopped" at once instead of waiting for a stale heartbeat. */
enum ss_daemon_state {
    SS_DAEMON_NONE = 0,     /* no daemon has attached yet */
    SS_DAEMON_RUNNING = 1,
    SS_DAEMON_STOPPED = 2,  /* left cleanly; a crash leaves RUNNING */
};

/* Slot life cycle. Only the transitions below are legal:
 *   FREE -> CLAIMED -> ACTIVE      module: claim, fill header, publish
 *   ACTIVE -> CLOSING              module: stop or hangup
 *   CLOSING -> CLAIMED -> FREE     daemon: after StreamEnd, its ring pages released
 * A call that ends while no daemon runs stays CLOSING until the next daemon
 * attaches: it delivers the frames left in the rings and StreamEnd, then frees
 * the slot. New calls need a live daemon, so CLOSING slots never pile up. */
enum ss_slot_state {
    SS_SLOT_FREE = 0,
    SS_SLOT_CLAIMED = 1,
    SS_SLOT_ACTIVE = 2,
    SS_SLOT_CLOSING = 3,
};

/* What the daemon reports back about a slot's stream (ss_slot_hdr.link). */
enum ss_link_state {
    SS_LINK_NONE = 0,       /* daemon has not picked the slot up yet */
    SS_LINK_CONNECTING = 1,
    SS_LINK_STREAMING = 2,
    SS_LINK_RETRYING = 3,   /* stream broke; buffering and reconnecting */
    SS_LINK_FAILED = 4,     /* gave up; reason in a SS_CTL_ERROR message */
};

enum ss_track {
    SS_TRACK_IN = 0,        /* what the caller says (read path) */
    SS_TRACK_OUT = 1,       /* what the caller hears (write path) */
    SS_TRACKS = 2,
};
#define SS_TRACKS_MASK_IN   (1u << SS_TRACK_IN)
#define SS_TRACKS_MASK_OUT  (1u << SS_TRACK_OUT)

#define SS_SLOT_F_TLS       1u

/* Why the module closed the slot (ss_slot_hdr.end_reason), so that the AI
 * server's StreamEnd can tell a hangup from an operator's stop. */
enum ss_end_reason {
    SS_END_HANGUP = 0,      /* the call ended (or its media bug was removed) */
    SS_END_STOP = 1,        /* uuid_ai_stream <uuid> stop */
    SS_END_UNLOAD = 2,      /* mod_ai_stream unloaded during the call */
};

/* Record types. PAD fills the end of a record ring when a record would wrap. */
enum ss_rec_type {
    SS_REC_PAD = 0,
    SS_REC_AUDIO = 1,
    /* up rings: the phone sent nothing for this frame's time (CNG, silence
     * suppression, lost packets); the payload is that many zero samples, so
     * the timeline and the daemon's path stay those of audio. */
    SS_REC_SILENCE = 2,
    /* ctl_in: module -> daemon */
    SS_CTL_PAYLOAD = 16,        /* send_payload: JSON object text */
    SS_CTL_DTMF = 17,           /* digit byte, then uint32 little-endian duration in ms */
    /* ctl_out: daemon -> module. Text is UTF-8 without a NUL. */
    SS_CTL_HANGUP = 32,         /* cause name, e.g. NORMAL_CLEARING */
    SS_CTL_TRANSFER = 33,       /* "destination [dialplan [context]]", as uuid_transfer takes it */
    SS_CTL_EVENT = 34,          /* JSON {"name": ..., "data": {...}}: raise ai_stream::event */
    SS_CTL_MARK = 35,           /* mark name: playout passed it, raise ai_stream::mark */
    SS_CTL_ERROR = 36,          /* reason: raise ai_stream::error */
    SS_CTL_SEND_DTMF = 37,      /* uint32 little-endian ms per digit, then the digits (0-9*#A-DwW) */
};

/* Record header; records are 8-byte aligned and never wrap. Audio payload is
 * PCM16 mono at the slot's channel_rate: samples = len / 2. */
typedef struct ss_rec {
    uint32_t len;               /* payload bytes after this header */
    uint16_t type;              /* enum ss_rec_type */
    uint16_t track;             /* enum ss_track (audio only) */
    uint64_t seq;               /* per ring, from 0, +1 per record written */
    uint64_t ts_ns;             /* CLOCK_MONOTONIC at capture */
} ss_rec;
#define SS_REC_HDR ((uint32_t)sizeof(ss_rec))

/* Ring header. Positions are free-running 64-bit byte counts (never reset,
 * so a stale CAS can never match: no ABA across calls). head is advanced by
 * the consumer, and by the producer only to discard the oldest data, both
 * with compare-and-swap; tail is written by the producer alone. Counters live
 * on the line of the side that writes them. */
typedef struct ss_ring {
    _Alignas(SS_CACHELINE) SS_ATOMIC(uint64_t) head;
    SS_ATOMIC(uint64_t) underruns;      /* consumer: short reads */
    /* Consumer, up rings: every record seq below this reached the AI server's
     * stream (or was announced lost), so a restarted daemon can announce the
     * rest as a Gap and start the stream exactly there. */
    SS_ATOMIC(uint64_t) sent_seq;
    _Alignas(SS_CACHELINE) SS_ATOMIC(uint64_t) tail;
    SS_ATOMIC(uint64_t) seq;            /* producer: next record seq */
    SS_ATOMIC(uint64_t) dropped;        /* producer: records (or bytes) discarded to make room */
    SS_ATOMIC(uint64_t) rejected;       /* producer: writes refused (full, too big) */
} ss_ring;

/* The call, as the module describes it. Written while CLAIMED, read-only
 * once ACTIVE. Strings are NUL-terminated; readers check that. */
typedef struct ss_slot_hdr {
    SS_ATOMIC(uint32_t) state;          /* enum ss_slot_state */
    SS_ATOMIC(uint32_t) generation;     /* +1 at every claim: tells calls apart */
    SS_ATOMIC(uint32_t) end_reason;     /* enum ss_end_reason, set as it goes CLOSING */
    uint32_t channel_rate;              /* Hz of the PCM in up and down */
    uint32_t requested_rate;            /* Hz the AI server wants (0: channel_rate) */
    uint32_t tracks;                    /* SS_TRACKS_MASK_* */
    uint32_t flags;                     /* SS_SLOT_F_* */
    uint64_t started_ns;                /* CLOCK_MONOTONIC at claim */
    char uuid[SS_UUID_MAX];
    char target[SS_TARGET_MAX];         /* host:port of the AI server */
    char codec[SS_CODEC_MAX];
    char caller[SS_NUMBER_MAX];
    char callee[SS_NUMBER_MAX];
    char metadata[SS_META_MAX];         /* JSON object text, may be empty */
    /* Daemon-written, read by the module for status. */
    _Alignas(SS_CACHELINE) SS_ATOMIC(uint32_t) link;   /* enum ss_link_state */
    SS_ATOMIC(uint32_t) attached_gen;   /* generation the daemon has opened a stream for */
    SS_ATOMIC(uint64_t) frames_sent;
    SS_ATOMIC(uint64_t) frames_received;
    /* Non-zero: the AI server paused playback; ss_stream_read_tts takes
     * nothing, so what the ring holds plays on exactly where it stopped. */
    SS_ATOMIC(uint32_t) tts_paused;
} ss_slot_hdr;

typedef struct ss_slot {
    ss_slot_hdr hdr;
    ss_ring up[SS_TRACKS];
    ss_ring down;
    ss_ring ctl_in;
    ss_ring ctl_out;
    /* Page-aligned, so the pages a call does not use stay unallocated. */
    _Alignas(SS_PAGE) uint8_t up_data[SS_TRACKS][SS_UP_BYTES];
    uint8_t down_data[SS_DOWN_BYTES];
    uint8_t ctl_in_data[SS_CTL_BYTES];
    uint8_t ctl_out_data[SS_CTL_BYTES];
} ss_slot;

typedef struct ss_pool_hdr {
    uint64_t magic;                     /* SS_POOL_MAGIC */
    uint32_t version;                   /* SS_LAYOUT_VERSION */
    uint32_t header_bytes;              /* SS_POOL_HDR_BYTES */
    uint32_t slot_count;
    uint32_t reserved;
    uint64_t slot_bytes;                /* sizeof(ss_slot) */
    uint64_t pool_bytes;                /* header_bytes + slot_count * slot_bytes */
    _Alignas(SS_CACHELINE) SS_ATOMIC(uint64_t) heartbeat_ns; /* daemon, every tick */
    SS_ATOMIC(uint32_t) daemon_pid;
    SS_ATOMIC(uint32_t) daemon_epoch;   /* +1 each time a daemon attaches */
    SS_ATOMIC(uint32_t) daemon_state;   /* enum ss_daemon_state */
    SS_ATOMIC(uint64_t) heartbeat_stale_ns; /* the daemon's promise; 0: SS_HEARTBEAT_STALE_NS */
} ss_pool_hdr;

/* Up ring bytes for a channel rate: the smallest power of two from
 * SS_UP_BYTES_MIN that holds SS_UP_RECORDS 20 ms records, at most SS_UP_BYTES
 * (8 kHz: 64 KiB, 3.8 s; 16 kHz: 128 KiB, 3.9 s; 48 kHz: 256 KiB, 2.7 s).
 * Both sides compute it: the module from its own rate, the daemon from the
 * validated channel_rate. */
static inline uint32_t ss_up_bytes(uint32_t rate)
{
    uint32_t rec = SS_REC_HDR + rate / 25u;    /* 20 ms of PCM16 mono */
    uint32_t cap = SS_UP_BYTES_MIN;
    while (cap < SS_UP_BYTES && cap / rec < SS_UP_RECORDS)
        cap <<= 1;
    return cap;
}

/* The largest audio record at a rate: 120 ms of PCM16 mono. The daemon
 * keeps a resume window a few of these over its bound, so it is per rate. */
static inline uint32_t ss_frame_bytes_max(uint32_t rate)
{
    uint64_t n = (uint64_t)rate * 240u / 1000u & ~1ull;
    return n < SS_FRAME_BYTES_MAX ? (uint32_t)n : SS_FRAME_BYTES_MAX;
}

/* Down ring bytes: half a second of PCM16 at the rate, SS_DOWN_BYTES_MIN to
 * SS_DOWN_BYTES (8 kHz: 8 KiB; 16 kHz: 16 KiB; 48 kHz: 64 KiB, 0.68 s). The
 * daemon keeps prebuffer_ms (60 ms by default) in it, its queue the rest. */
static inline uint32_t ss_down_bytes(uint32_t rate)
{
    uint32_t cap = SS_DOWN_BYTES_MIN;
    while (cap < SS_DOWN_BYTES && cap < rate)
        cap <<= 1;
    return cap;
}

/* Where a slot's ring data starts: everything before it (call header, ring
 * headers) is allocated with the pool; the data pages a call uses are
 * allocated when it claims the slot and released when the daemon frees it. */
#define SS_SLOT_DATA_OFFSET ((uint64_t)offsetof(ss_slot, up_data))

#ifndef __cplusplus
_Static_assert(sizeof(ss_pool_hdr) <= SS_POOL_HDR_BYTES, "pool header too big");
_Static_assert((SS_UP_BYTES & (SS_UP_BYTES - 1)) == 0, "up ring not a power of two");
_Static_assert((SS_DOWN_BYTES & (SS_DOWN_BYTES - 1)) == 0, "down ring not a power of two");
_Static_assert((SS_CTL_BYTES & (SS_CTL_BYTES - 1)) == 0, "ctl ring not a power of two");
_Static_assert(sizeof(ss_rec) == 24, "record header is 24 bytes");
_Static_assert(sizeof(ss_slot) % SS_CACHELINE == 0, "slots keep cache-line alignment");
_Static_assert(SS_FRAME_BYTES_MAX + 2 * sizeof(ss_rec) < SS_UP_BYTES_MIN / 4, "frames are small next to the ring");
_Static_assert(SS_POOL_HDR_BYTES % SS_PAGE == 0 && sizeof(ss_slot) % SS_PAGE == 0, "slots start on a page");
/* An empty control ring takes the largest message from any position: the pad
 * to the ring's end is shorter than the record. */
_Static_assert(sizeof(ss_rec) + SS_CTL_MSG_MAX <= SS_CTL_BYTES / 2, "ctl messages fit twice");
_Static_assert(SS_CTL_MSG_MAX % 8 == 0, "ctl records stay 8-byte aligned");
#endif

#endif /* SS_LAYOUT_H */
