/*
 * mod_ai_stream.h: what the module's files share (private to the module).
 * mod_ai_stream streams a call's audio to the SmartStream daemon through the
 * shared-memory pool (csrc/ss_stream.h) and plays the AI server's TTS back.
 * These files are FreeSWITCH glue only: everything about the pool, the slots
 * and the rings lives in csrc/ and is compiled into the module unchanged.
 *
 *   mod_ai_stream.c  load/unload, configuration, the globals
 *   ais_api.c        API uuid_ai_stream, apps ai_stream and ai_stream_bot, arguments
 *   ais_stream.c     stream life cycle: pool mapping, start/stop/finalize,
 *                    read hook, media bug, DTMF hook
 *   ais_control.c    control thread: actions from the daemon, daemon health,
 *                    TTS nobody plays
 *   ais_events.c     ai_stream::* events
 *
 * How audio flows:
 *   read side   core read hook (0001-core-read-frame-hook.patch), or a
 *               SMBF_READ_STREAM media bug on an unpatched core: each decoded
 *               frame goes to ss_stream_write(SS_TRACK_IN)
 *   write side  one SMBF_WRITE_REPLACE media bug: TTS from ss_stream_read_tts
 *               replaces the outgoing frame; tracks=outbound|both also copies
 *               the outgoing frame to ss_stream_write(SS_TRACK_OUT). It only
 *               sees frames something writes: ai_stream_bot writes them itself.
 *               With tracks=inbound on the read hook (lazy_bug) the control
 *               thread attaches it only while TTS is pending, so a listening
 *               call has no media bug at all; the hangup then comes from a
 *               sticky state handler (on_hangup, on_destroy)
 *   control     one module thread: ss_stream_take for every stream every
 *               20 ms (hangup, transfer, mark, event, error, send_dtmf),
 *               daemon heartbeat; a paused playback is a slot flag that
 *               ss_stream_read_tts honours, nothing here
 *   to daemon   send_payload and DTMF through ss_stream_post, serialized per
 *               stream by post_mutex (the ctl ring has one producer)
 *
 * Locks, outermost first: ais_globals.ctl_mutex (start/stop/unload), then the
 * FreeSWITCH session locks, then ais_globals.mutex (stream list, pool maps,
 * stream flags), then stream->post_mutex. ais_globals.mutex is never held
 * while calling into FreeSWITCH code that takes a session, bug or codec lock.
 * Our bugs are removed under the session's codec read lock (ais_remove_bug),
 * so their CLOSE takes ais_globals.mutex inside it, as the DTMF hook may.
 * The media callbacks (read hook, write-replace bug) take no lock at all.
 */
#ifndef MOD_AI_STREAM_H
#define MOD_AI_STREAM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <switch.h>
#include <sys/stat.h>
#include "ss_action.h"
#include "ss_stream.h"

#pragma GCC visibility push(hidden)

#define AIS_EV_START "ai_stream::start"
#define AIS_EV_STOP  "ai_stream::stop"
#define AIS_EV_ERROR "ai_stream::error"
#define AIS_EV_MARK  "ai_stream::mark"
#define AIS_EV_EVENT "ai_stream::event"
#define AIS_BUG_NAME "ai_stream"
#define AIS_DEFAULT_POOL "/run/smartstream/smartstream.pool"

/* The core read hook, from 0001-core-read-frame-hook.patch. Always looked up
 * with dlsym: a module built against patched headers still loads on an
 * unpatched core, and one built against unpatched headers still uses the
 * hook on a patched core. */
#ifndef SWITCH_HAS_READ_HOOK
typedef void (*switch_core_session_read_hook_t)(switch_core_session_t *session, const switch_frame_t *frame, void *user_data);
#endif
typedef void (*ais_set_read_hook_t)(switch_core_session_t *session, switch_core_session_read_hook_t hook, void *user_data);

/* One mapping of the pool file. A daemon that comes back with a new file gets
 * a new mapping; the old one stays mapped until its last stream is gone. */
typedef struct ais_map {
	ss_pool pool;
	dev_t dev;
	ino_t ino;
	uint32_t streams;
	struct ais_map *next;
} ais_map;

typedef struct ais_stream {
	switch_memory_pool_t *pool;
	switch_mutex_t *post_mutex;
	ss_stream ss;
	ais_map *map;
	switch_media_bug_t *bug;
	char uuid[SWITCH_UUID_FORMATTED_LENGTH + 1];
	char target[SS_TARGET_MAX];
	uint32_t rate;                 /* channel_rate of the slot */
	uint32_t requested_rate;       /* 0: channel rate */
	uint32_t tracks;               /* SS_TRACKS_MASK_* */
	int tls;
	int use_hook;                  /* inbound audio from the core read hook */
	int use_read_bug;              /* inbound audio from SMBF_READ_STREAM */
	/* tracks=inbound on the read hook: the write-replace bug is attached only
	 * while TTS is pending (ais_control.c), and the hangup comes from
	 * ais_state_handler, not from the bug's CLOSE. */
	int lazy_bug;
	/* Read without a lock by the media callbacks; cleared before teardown. */
	_Atomic int active;
	/* Under ais_globals.mutex. */
	int ended;                     /* stopped or hung up: no longer "running" */
	int bug_closed;                /* the channel let go: the whole-call bug's CLOSE seen, or (lazy_bug) stop/hangup done */
	int bug_busy;                  /* the control thread is adding or removing the TTS bug: s stays */
	int handler_set;               /* ais_state_handler is on the channel (lazy_bug) */
	int hook_cleared;              /* the read hook cannot run any more */
	int detach_requested;          /* bug closed under us: poll thread clears the hook */
	int held;                      /* ai_stream_bot still reads active: not freed yet */
	uint32_t end_reason;           /* enum ss_end_reason, for the AI server's StreamEnd */
	/* Control thread only: the TTS-nobody-plays check (ais_control.c). */
	uint64_t seen_replaces;
	uint32_t idle_ticks;
	int unplayed_reported;
	uint32_t tts_idle_ticks;       /* ticks with no TTS pending (lazy_bug: detach after AIS_BUG_IDLE_TICKS) */
	int bug_add_reported;          /* lazy_bug: a failed TTS bug add was logged */
	/* Each written by one thread only. */
	_Atomic uint64_t frames_in, frames_out, tts_frames, frames_skipped, write_errors;
	_Atomic uint64_t replaces;     /* write-replace callbacks: something writes audio */
	struct ais_stream *next;
} ais_stream;

/* A start's arguments: channel variables, then the app's or API's line. */
typedef struct ais_args {
	char target[SS_TARGET_MAX];
	uint32_t sample_rate;          /* 0: channel rate */
	uint32_t tracks;
	int tls;
	int without_daemon;            /* accept the start while the daemon is down */
	char metadata[SS_META_MAX];
} ais_args;

typedef struct ais_globals_t {
	switch_memory_pool_t *pool;
	switch_mutex_t *mutex;
	switch_mutex_t *ctl_mutex;
	char pool_path[256];
	uid_t pool_owner;              /* the daemon's uid; SS_OWNER_OF_DIR: the pool directory's owner */
	char transfer_allow[1024];     /* "dialplan:context" list (ss_action.h); "": XML, own context */
	int start_without_daemon;      /* default of ais_args.without_daemon */
	ais_map *maps;
	ais_map *cur;
	ais_stream *streams;
	ais_set_read_hook_t set_read_hook;
	switch_thread_t *thread;
	volatile int running;
	int daemon_health;             /* enum ss_daemon_health last reported */
	uint32_t slots_corrupted;      /* slots released after their header was overwritten */
	uint32_t handler_channels;     /* channels carrying ais_state_handler: unload waits for 0 */
} ais_globals_t;

extern ais_globals_t ais_globals;

static inline void ais_bump(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

static inline uint64_t ais_get(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* ais_events.c */
switch_status_t ais_events_reserve(void);
void ais_events_free(void);
/* Event with the channel's data when the session is given or can be found. */
switch_event_t *ais_event(switch_core_session_t *session, const char *uuid, const char *subclass);
void ais_fire_error(switch_core_session_t *session, const char *uuid, const char *reason);

/* ais_stream.c */
int ais_pool_refresh_locked(char *err, size_t errlen);
ais_stream *ais_find_locked(const char *uuid, int running_only);
void ais_finalize_locked(ais_stream *s);
/* ctl_mutex held. 0, or -1 with the whole reply reason in err. *waiting: the
 * daemon is down and the stream waits for it. hold: the stream stays
 * allocated (s->held) for ai_stream_bot, which gets it in *held_out. */
int ais_start(switch_core_session_t *session, ais_args *a, int hold, ais_stream **held_out, int *waiting,
			  char *err, size_t errlen);
int ais_stop(switch_core_session_t *session, uint32_t end_reason, char *err, size_t errlen);
/* ai_stream_bot is done with s: it may be freed once over. */
void ais_release(ais_stream *s);
void ais_detach(const char *uuid);
/* Control thread, s->bug_busy set by it: attach the TTS bug (attach) or remove it. */
void ais_tts_bug(ais_stream *s, int attach);
void ais_stop_all(void);

/* ais_control.c */
void *SWITCH_THREAD_FUNC ais_poll_thread(switch_thread_t *thread, void *obj);

/* ais_api.c: the API, the apps and their console completion. */
void ais_api_register(switch_loadable_module_interface_t **module_interface);
void ais_api_unregister(void);

#pragma GCC visibility pop

#endif /* MOD_AI_STREAM_H */
