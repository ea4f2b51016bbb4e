/*
 * mod_ai_stream: stream a call's audio to the SmartStream daemon through the
 * shared-memory pool (csrc/ss_stream.h) and play the AI server's TTS back.
 *
 * This file is FreeSWITCH glue only. Everything about the pool, the slots and
 * the rings lives in csrc/ and is compiled into the module unchanged.
 *
 *   read side   core read hook (0001-core-read-frame-hook.patch), or a
 *               SMBF_READ_STREAM media bug on an unpatched core: each decoded
 *               frame goes to ss_stream_write(SS_TRACK_IN)
 *   write side  one SMBF_WRITE_REPLACE media bug: TTS from ss_stream_read_tts
 *               replaces the outgoing frame; tracks=outbound|both also copies
 *               the outgoing frame to ss_stream_write(SS_TRACK_OUT)
 *   control     one module thread: ss_stream_take for every stream every
 *               20 ms (hangup, transfer, mark, event, error, send_dtmf),
 *               daemon heartbeat; a paused playback is a slot flag that
 *               ss_stream_read_tts honours, nothing here
 *   to daemon   send_payload and DTMF through ss_stream_post, serialized per
 *               stream by post_mutex (the ctl ring has one producer)
 *
 * Locks, outermost first: globals.ctl_mutex (start/stop/unload), then the
 * FreeSWITCH session locks, then globals.mutex (stream list, pool maps,
 * stream flags), then stream->post_mutex. globals.mutex is never held while
 * calling into FreeSWITCH code that takes a session, bug or codec lock.
 * The media callbacks (read hook, write-replace bug) take no lock at all.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <switch.h>
#include <dlfcn.h>
#include <pwd.h>
#include <sys/stat.h>
#include "ss_action.h"
#include "ss_stream.h"

SWITCH_MODULE_LOAD_FUNCTION(mod_ai_stream_load);
SWITCH_MODULE_SHUTDOWN_FUNCTION(mod_ai_stream_shutdown);
SWITCH_MODULE_DEFINITION(mod_ai_stream, mod_ai_stream_load, mod_ai_stream_shutdown, NULL);

#define AIS_EV_START "ai_stream::start"
#define AIS_EV_STOP  "ai_stream::stop"
#define AIS_EV_ERROR "ai_stream::error"
#define AIS_EV_MARK  "ai_stream::mark"
#define AIS_EV_EVENT "ai_stream::event"
#define AIS_BUG_NAME "ai_stream"
#define AIS_DEFAULT_POOL "/run/smartstream/smartstream.pool"
#define AIS_POLL_US 20000
#define AIS_TAKE_PER_TICK 32              /* control messages per stream per tick */
#define AIS_RESTAT_NS 1000000000ull       /* while the daemon is gone: look for a new pool file */
#define AIS_SYNTAX "<uuid> start <host:port> [sample_rate=8000|16000|24000|48000] [tracks=inbound|outbound|both] " \
	"[tls=true|false] [metadata=<JSON object>] | <uuid> stop | <uuid> send_payload <JSON object> | <uuid> status"
#define AIS_APP_SYNTAX "[<host:port>] [sample_rate=...] [tracks=...] [tls=...] [metadata=<JSON object>] | stop"

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
	/* Read without a lock by the media callbacks; cleared before teardown. */
	_Atomic int active;
	/* Under globals.mutex. */
	int ended;                     /* stopped or bug closed: no longer "running" */
	int bug_closed;                /* SWITCH_ABC_TYPE_CLOSE seen */
	int hook_cleared;              /* the read hook cannot run any more */
	int detach_requested;          /* bug closed under us: poll thread clears the hook */
	uint32_t end_reason;           /* enum ss_end_reason, for the AI server's StreamEnd */
	/* Each written by one thread only. */
	_Atomic uint64_t frames_in, frames_out, tts_frames, frames_skipped, write_errors;
	struct ais_stream *next;
} ais_stream;

static struct {
	switch_memory_pool_t *pool;
	switch_mutex_t *mutex;
	switch_mutex_t *ctl_mutex;
	char pool_path[256];
	uid_t pool_owner;              /* the daemon's uid; SS_OWNER_OF_DIR: the pool directory's owner */
	char transfer_allow[1024];     /* "dialplan:context" list (ss_action.h); "": XML, own context */
	ais_map *maps;
	ais_map *cur;
	ais_stream *streams;
	ais_set_read_hook_t set_read_hook;
	switch_thread_t *thread;
	volatile int running;
	int daemon_health;             /* enum ss_daemon_health last reported */
	uint32_t slots_corrupted;      /* slots released after their header was overwritten */
} globals;

static inline void ais_bump(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

static inline uint64_t ais_get(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---------------------------------------------------------------- events */

/* Event with the channel's data when the session is given or can be found. */
static switch_event_t *ais_event(switch_core_session_t *session, const char *uuid, const char *subclass)
{
	switch_event_t *event = NULL;
	switch_core_session_t *found = NULL;

	if (switch_event_create_subclass(&event, SWITCH_EVENT_CUSTOM, subclass) != SWITCH_STATUS_SUCCESS) {
		return NULL;
	}
	if (!session && uuid && *uuid) {
		session = found = switch_core_session_locate(uuid);
	}
	if (session) {
		switch_channel_event_set_data(switch_core_session_get_channel(session), event);
	} else if (uuid && *uuid) {
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "Unique-ID", uuid);
	}
	if (found) {
		switch_core_session_rwunlock(found);
	}
	return event;
}

static void ais_fire_error(switch_core_session_t *session, const char *uuid, const char *reason)
{
	switch_event_t *event = ais_event(session, uuid, AIS_EV_ERROR);
	if (event) {
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Error", reason);
		switch_event_fire(&event);
	}
}

/* ------------------------------------------------------------------ pool */

/* Under globals.mutex. Make globals.cur a mapping of the file at pool_path,
 * mapping it again if the daemon has put a new file there. */
static int ais_pool_refresh_locked(char *err, size_t errlen)
{
	struct stat st;
	ais_map *m;
	int rc;

	if (stat(globals.pool_path, &st) < 0) {
		if (globals.cur) {
			return SS_OK;       /* keep the old mapping; heartbeat says the rest */
		}
		snprintf(err, errlen, "pool %s: %s", globals.pool_path, strerror(errno));
		return SS_E_NODAEMON;
	}
	if (globals.cur && globals.cur->dev == st.st_dev && globals.cur->ino == st.st_ino) {
		return SS_OK;
	}
	if (!(m = calloc(1, sizeof(*m)))) {
		snprintf(err, errlen, "out of memory");
		return SS_E_SYS;
	}
	if ((rc = ss_pool_attach_as(globals.pool_path, globals.pool_owner, &m->pool, err, errlen)) != SS_OK) {
		free(m);
		return globals.cur ? SS_OK : rc;
	}
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	m->next = globals.maps;
	globals.maps = m;
	if (globals.cur && !globals.cur->streams) {
		ais_map **pp;
		for (pp = &globals.maps; *pp; pp = &(*pp)->next) {
			if (*pp == globals.cur) {
				*pp = globals.cur->next;
				break;
			}
		}
		ss_pool_detach(&globals.cur->pool);
		free(globals.cur);
	}
	globals.cur = m;
	switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_NOTICE, "ai_stream: attached pool %s (%u slots)\n",
					  globals.pool_path, m->pool.slot_count);
	return SS_OK;
}

/* ------------------------------------------------------- stream lifetime */

static ais_stream *ais_find_locked(const char *uuid, int running_only)
{
	ais_stream *s;
	for (s = globals.streams; s; s = s->next) {
		if (!strcmp(s->uuid, uuid) && (!running_only || !s->ended)) {
			return s;
		}
	}
	return NULL;
}

/* Under globals.mutex. Once nothing can touch the slot any more (stopped, bug
 * closed, hook cleared) hand it back to the daemon and free the stream. */
static void ais_finalize_locked(ais_stream *s)
{
	ais_stream **pp;
	ais_map *map = s->map;
	int rc;

	if (!(s->ended && s->bug_closed && s->hook_cleared)) {
		return;
	}
	if ((rc = ss_stream_close(&s->ss, s->end_reason)) == SS_E_CORRUPT) {
		switch_log_printf(SWITCH_CHANNEL_UUID_LOG(s->uuid), SWITCH_LOG_ERROR,
						  "ai_stream: slot %u: its generation was overwritten during the call; released it (%u so far)\n",
						  s->ss.idx, ++globals.slots_corrupted);
	} else if (rc != SS_OK) {
		switch_log_printf(SWITCH_CHANNEL_UUID_LOG(s->uuid), SWITCH_LOG_DEBUG, "ai_stream: slot %u close: %s\n",
						  s->ss.idx, ss_strerror(rc));
	}
	for (pp = &globals.streams; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	if (map && !--map->streams && map != globals.cur) {
		ais_map **mp;
		for (mp = &globals.maps; *mp; mp = &(*mp)->next) {
			if (*mp == map) {
				*mp = map->next;
				break;
			}
		}
		ss_pool_detach(&map->pool);
		free(map);
	}
	switch_log_printf(SWITCH_CHANNEL_UUID_LOG(s->uuid), SWITCH_LOG_DEBUG, "ai_stream: released slot %u\n", s->ss.idx);
	{
		switch_memory_pool_t *pool = s->pool;
		switch_core_destroy_memory_pool(&pool);
	}
}

/* ----------------------------------------------------------- media paths */

/* Core read hook: one decoded L16 frame at the channel rate. Lock-free,
 * allocation-free, no system call (ss_now_ns is the vDSO clock). */
static void ais_read_hook(switch_core_session_t *session, const switch_frame_t *frame, void *user_data)
{
	ais_stream *s = user_data;
	uint32_t samples = frame->datalen / 2;

	(void) session;
	if (!atomic_load_explicit(&s->active, memory_order_relaxed)) {
		return;
	}
	/* Mono L16 only: a frame left encoded by a decoder error has datalen != 2 * samples. */
	if (!samples || (frame->samples && frame->samples != samples) || (frame->rate && frame->rate != s->rate)) {
		ais_bump(&s->frames_skipped);
		return;
	}
	/* SFF_CNG: the phone sent nothing for this frame's time (silence suppression)
	 * and the core passes its placeholder: a silence record keeps one frame per
	 * packet time, flagged synthesized to the AI server. */
	if (((frame->flags & SFF_CNG) ? ss_stream_write_silence(&s->ss, SS_TRACK_IN, ss_now_ns(), samples)
	     : ss_stream_write(&s->ss, SS_TRACK_IN, ss_now_ns(), frame->data, samples)) != SS_OK) {
		ais_bump(&s->write_errors);
	}
	ais_bump(&s->frames_in);
}

static void ais_on_bug_close(ais_stream *s, switch_core_session_t *session)
{
	int fire_stop = 0;
	char uuid[sizeof(s->uuid)];

	atomic_store_explicit(&s->active, 0, memory_order_relaxed);
	switch_mutex_lock(globals.mutex);
	s->bug_closed = 1;
	if (!s->ended) {
		/* Hangup (or someone removed our bug): not our stop. The read hook can
		 * only be cleared outside the bug lock we are called under, so the
		 * poll thread does it; the hook does nothing meanwhile (active = 0). */
		s->ended = 1;
		s->detach_requested = !s->hook_cleared;
		fire_stop = 1;
	}
	switch_copy_string(uuid, s->uuid, sizeof(uuid));
	ais_finalize_locked(s);        /* may free s */
	switch_mutex_unlock(globals.mutex);

	if (fire_stop) {
		switch_event_t *event = ais_event(session, uuid, AIS_EV_STOP);
		if (event) {
			switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Reason", "hangup");
			switch_event_fire(&event);
		}
		switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_INFO, "ai_stream: stopped (channel closing)\n");
	}
}

static switch_bool_t ais_bug_callback(switch_media_bug_t *bug, void *user_data, switch_abc_type_t type)
{
	ais_stream *s = user_data;

	switch (type) {
	case SWITCH_ABC_TYPE_WRITE_REPLACE:
		{
			switch_frame_t *f = switch_core_media_bug_get_write_replace_frame(bug);
			uint32_t samples;

			if (!f || !f->data || !atomic_load_explicit(&s->active, memory_order_relaxed)) {
				break;
			}
			samples = f->datalen / 2;
			if (!samples || (f->samples && f->samples != samples) || f->channels > 1) {
				break;
			}
			if (ss_stream_read_tts(&s->ss, f->data, samples)) {
				switch_core_media_bug_set_write_replace_frame(bug, f);
				ais_bump(&s->tts_frames);
			}
			if (s->tracks & SS_TRACKS_MASK_OUT) {
				if (ss_stream_write(&s->ss, SS_TRACK_OUT, ss_now_ns(), f->data, samples) != SS_OK) {
					ais_bump(&s->write_errors);
				}
				ais_bump(&s->frames_out);
			}
		}
		break;
	case SWITCH_ABC_TYPE_READ:
		if (s->use_read_bug) {
			/* Fallback on a core without the read hook. */
			uint8_t data[SWITCH_RECOMMENDED_BUFFER_SIZE];
			switch_frame_t frame = { 0 };

			frame.data = data;
			frame.buflen = sizeof(data);
			while (switch_core_media_bug_read(bug, &frame, SWITCH_TRUE) == SWITCH_STATUS_SUCCESS) {
				uint32_t samples = frame.datalen / 2;
				if (!samples || !atomic_load_explicit(&s->active, memory_order_relaxed)) {
					break;
				}
				const int16_t *pcm = (const int16_t *) data;
				/* no SFF_CNG here: the core's CNG fill is the only sign */
				if ((ss_pcm_is_cng_fill(pcm, samples) ? ss_stream_write_silence(&s->ss, SS_TRACK_IN, ss_now_ns(), samples)
				     : ss_stream_write(&s->ss, SS_TRACK_IN, ss_now_ns(), pcm, samples)) != SS_OK) {
					ais_bump(&s->write_errors);
				}
				ais_bump(&s->frames_in);
			}
		}
		break;
	case SWITCH_ABC_TYPE_CLOSE:
		ais_on_bug_close(s, switch_core_media_bug_get_session(bug));
		break;
	default:
		break;
	}
	return SWITCH_TRUE;
}

/* DTMF from the channel: digit byte + uint32 LE duration in ms. */
static switch_status_t ais_on_dtmf(switch_core_session_t *session, const switch_dtmf_t *dtmf, switch_dtmf_direction_t direction)
{
	ais_stream *s;
	uint8_t msg[5];
	uint32_t ms;
	int rc = SS_OK;

	if (direction != SWITCH_DTMF_RECV) {
		return SWITCH_STATUS_SUCCESS;
	}
	ms = dtmf->duration / 8;        /* FreeSWITCH DTMF durations are 8 kHz samples */
	msg[0] = (uint8_t) dtmf->digit;
	msg[1] = (uint8_t) ms;
	msg[2] = (uint8_t) (ms >> 8);
	msg[3] = (uint8_t) (ms >> 16);
	msg[4] = (uint8_t) (ms >> 24);

	switch_mutex_lock(globals.mutex);
	if ((s = ais_find_locked(switch_core_session_get_uuid(session), 1))) {
		switch_mutex_lock(s->post_mutex);
		rc = ss_stream_post(&s->ss, SS_CTL_DTMF, msg, sizeof(msg));
		switch_mutex_unlock(s->post_mutex);
	}
	switch_mutex_unlock(globals.mutex);
	if (rc != SS_OK) {
		switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_WARNING, "ai_stream: DTMF %c not sent: %s\n",
						  dtmf->digit, ss_strerror(rc));
	}
	return SWITCH_STATUS_SUCCESS;
}

/* ------------------------------------------------------------- arguments */

typedef struct ais_args {
	char target[SS_TARGET_MAX];
	uint32_t sample_rate;          /* 0: channel rate */
	uint32_t tracks;
	int tls;
	char metadata[SS_META_MAX];
} ais_args;

static int ais_bad(char *err, size_t errlen, const char *fmt, const char *what)
{
	snprintf(err, errlen, fmt, what ? what : "");
	return -1;
}

static int ais_set_target(ais_args *a, const char *v, char *err, size_t errlen)
{
	const char *colon = strrchr(v, ':');
	char *end = NULL;
	long port;

	if (!colon || colon == v || !colon[1]) {
		return ais_bad(err, errlen, "target '%s' is not host:port", v);
	}
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535) {
		return ais_bad(err, errlen, "bad port in target '%s'", v);
	}
	if (strlen(v) >= sizeof(a->target)) {
		return ais_bad(err, errlen, "target too long%s", NULL);
	}
	switch_copy_string(a->target, v, sizeof(a->target));
	return 0;
}

/* JSON object text; reason in err. */
static int ais_check_json_object(const char *text, char *err, size_t errlen)
{
	const char *end = NULL;
	cJSON *json = cJSON_ParseWithOpts(text, &end, 1);

	if (!json) {
		if (end && *end) {
			snprintf(err, errlen, "parse error at offset %ld near '%.20s'", (long) (end - text), end);
		} else {
			snprintf(err, errlen, "parse error (unexpected end of input)");
		}
		return -1;
	}
	if (!cJSON_IsObject(json)) {
		cJSON_Delete(json);
		snprintf(err, errlen, "not a JSON object");
		return -1;
	}
	cJSON_Delete(json);
	return 0;
}

static int ais_set(ais_args *a, const char *k, const char *v, char *err, size_t errlen)
{
	char jerr[128];

	if (!strcasecmp(k, "sample_rate")) {
		uint32_t r = (uint32_t) atoi(v);
		if (r != 8000 && r != 16000 && r != 24000 && r != 48000) {
			return ais_bad(err, errlen, "sample_rate '%s': use 8000, 16000, 24000 or 48000", v);
		}
		a->sample_rate = r;
	} else if (!strcasecmp(k, "tracks")) {
		if (!strcasecmp(v, "inbound")) {
			a->tracks = SS_TRACKS_MASK_IN;
		} else if (!strcasecmp(v, "outbound")) {
			a->tracks = SS_TRACKS_MASK_OUT;
		} else if (!strcasecmp(v, "both")) {
			a->tracks = SS_TRACKS_MASK_IN | SS_TRACKS_MASK_OUT;
		} else {
			return ais_bad(err, errlen, "tracks '%s': use inbound, outbound or both", v);
		}
	} else if (!strcasecmp(k, "tls")) {
		if (!strcasecmp(v, "true")) {
			a->tls = 1;
		} else if (!strcasecmp(v, "false")) {
			a->tls = 0;
		} else {
			return ais_bad(err, errlen, "tls '%s': use true or false", v);
		}
	} else if (!strcasecmp(k, "metadata")) {
		if (!*v) {
			a->metadata[0] = '\0';
			return 0;
		}
		if (strlen(v) >= sizeof(a->metadata)) {
			return ais_bad(err, errlen, "metadata longer than 4095 bytes%s", NULL);
		}
		if (ais_check_json_object(v, jerr, sizeof(jerr))) {
			return ais_bad(err, errlen, "metadata: %s", jerr);
		}
		switch_copy_string(a->metadata, v, sizeof(a->metadata));
	} else if (!strcasecmp(k, "target")) {
		return ais_set_target(a, v, err, errlen);
	} else {
		return ais_bad(err, errlen, "unknown key '%s'", k);
	}
	return 0;
}

/* Defaults from channel variables, then "[host:port] key=value ...". A value
 * starting with '{' runs to its matching '}' so JSON may contain spaces. */
static int ais_parse(switch_channel_t *channel, char *line, ais_args *a, char *err, size_t errlen)
{
	const char *v;
	char *p = line;
	int positional = 0;

	memset(a, 0, sizeof(*a));
	a->tracks = SS_TRACKS_MASK_IN;
	if (channel) {
		if ((v = switch_channel_get_variable(channel, "ai_stream_target")) && *v && ais_set(a, "target", v, err, errlen)) return -1;
		if ((v = switch_channel_get_variable(channel, "ai_stream_sample_rate")) && *v && ais_set(a, "sample_rate", v, err, errlen)) return -1;
		if ((v = switch_channel_get_variable(channel, "ai_stream_tracks")) && *v && ais_set(a, "tracks", v, err, errlen)) return -1;
		if ((v = switch_channel_get_variable(channel, "ai_stream_tls")) && *v && ais_set(a, "tls", v, err, errlen)) return -1;
		if ((v = switch_channel_get_variable(channel, "ai_stream_metadata")) && *v && ais_set(a, "metadata", v, err, errlen)) return -1;
	}

	while (p && *p) {
		char *tok, *eq;
		while (*p == ' ' || *p == '\t') p++;
		if (!*p) break;
		tok = p;
		eq = NULL;
		while (*p && *p != ' ' && *p != '\t' && !eq) {
			if (*p == '=') eq = p;
			p++;
		}
		if (eq && *p == '{') {
			/* JSON value: scan to the matching brace, honouring strings. */
			int depth = 0, in_str = 0;
			for (; *p; p++) {
				if (in_str) {
					if (*p == '\\' && p[1]) p++;
					else if (*p == '"') in_str = 0;
				} else if (*p == '"') {
					in_str = 1;
				} else if (*p == '{') {
					depth++;
				} else if (*p == '}' && !--depth) {
					p++;
					break;
				}
			}
		} else {
			while (*p && *p != ' ' && *p != '\t') p++;
		}
		if (*p) *p++ = '\0';
		if (eq) {
			*eq = '\0';
			if (ais_set(a, tok, eq + 1, err, errlen)) return -1;
		} else if (positional++) {
			return ais_bad(err, errlen, "unexpected argument '%s' (use key=value)", tok);
		} else if (ais_set_target(a, tok, err, errlen)) {
			return -1;
		}
	}
	if (!a->target[0]) {
		return ais_bad(err, errlen, "no target host:port (argument or ai_stream_target)%s", NULL);
	}
	return 0;
}

/* ------------------------------------------------------------ start/stop */

/* ctl_mutex held. On failure err has the whole reply reason. */
static int ais_start(switch_core_session_t *session, ais_args *a, char *err, size_t errlen)
{
	switch_channel_t *channel = switch_core_session_get_channel(session);
	switch_caller_profile_t *cp = switch_channel_get_caller_profile(channel);
	switch_codec_implementation_t rimpl = { 0 }, wimpl = { 0 };
	const char *uuid = switch_core_session_get_uuid(session);
	switch_memory_pool_t *pool = NULL;
	ais_stream *s;
	ss_call call = { 0 };
	char why[1024] = "";
	int rc;
	switch_media_bug_flag_t flags = SMBF_WRITE_REPLACE;
	switch_event_t *event;
	uint32_t slot;
	int use_hook;
	const char *tracks, *mode;

	switch_core_session_get_read_impl(session, &rimpl);
	switch_core_session_get_write_impl(session, &wimpl);
	if (!rimpl.actual_samples_per_second || !switch_core_session_get_read_codec(session)) {
		snprintf(err, errlen, "channel has no media yet (no read codec)");
		return -1;
	}
	if (rimpl.number_of_channels > 1) {
		snprintf(err, errlen, "bad arguments: %d-channel audio is not supported", rimpl.number_of_channels);
		return -1;
	}
	if (wimpl.actual_samples_per_second && wimpl.actual_samples_per_second != rimpl.actual_samples_per_second) {
		snprintf(err, errlen, "bad arguments: read rate %u differs from write rate %u",
				 rimpl.actual_samples_per_second, wimpl.actual_samples_per_second);
		return -1;
	}

	call.uuid = uuid;
	call.target = a->target;
	call.codec = rimpl.iananame;
	call.caller = cp ? cp->caller_id_number : NULL;
	call.callee = cp ? cp->destination_number : NULL;
	call.metadata = a->metadata;
	call.channel_rate = rimpl.actual_samples_per_second;
	call.requested_rate = a->sample_rate;
	call.tracks = a->tracks;
	call.flags = a->tls ? SS_SLOT_F_TLS : 0;

	if (switch_core_new_memory_pool(&pool) != SWITCH_STATUS_SUCCESS) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s = switch_core_alloc(pool, sizeof(*s));
	s->pool = pool;
	switch_mutex_init(&s->post_mutex, SWITCH_MUTEX_NESTED, pool);
	switch_copy_string(s->uuid, uuid, sizeof(s->uuid));
	switch_copy_string(s->target, a->target, sizeof(s->target));
	s->rate = rimpl.actual_samples_per_second;
	s->requested_rate = a->sample_rate;
	s->tracks = a->tracks;
	s->tls = a->tls;
	s->use_hook = (a->tracks & SS_TRACKS_MASK_IN) && globals.set_read_hook;
	s->use_read_bug = (a->tracks & SS_TRACKS_MASK_IN) && !globals.set_read_hook;
	s->hook_cleared = !s->use_hook;

	switch_mutex_lock(globals.mutex);
	if (ais_find_locked(uuid, 0)) {
		switch_mutex_unlock(globals.mutex);
		switch_core_destroy_memory_pool(&pool);
		snprintf(err, errlen, "stream already running");
		return -1;
	}
	rc = ais_pool_refresh_locked(why, sizeof(why));
	if (rc == SS_OK && !ss_pool_daemon_alive(&globals.cur->pool, ss_now_ns())) {
		rc = SS_E_NODAEMON;
		snprintf(why, sizeof(why), "daemon %s, pool %s",
				 ss_health_name(ss_pool_daemon_health(&globals.cur->pool, ss_now_ns())), globals.pool_path);
	}
	if (rc == SS_OK) {
		rc = ss_stream_open(&globals.cur->pool, &call, &s->ss, why, sizeof(why));
	}
	if (rc != SS_OK) {
		switch_mutex_unlock(globals.mutex);
		switch_core_destroy_memory_pool(&pool);
		if (rc == SS_E_NODAEMON) {
			snprintf(err, errlen, "no daemon (%s)", why);
		} else if (rc == SS_E_NOSLOT) {
			snprintf(err, errlen, "pool full (%u slots in use)", globals.cur ? globals.cur->pool.slot_count : 0);
		} else if (rc == SS_E_ARG) {
			snprintf(err, errlen, "bad arguments: %s", why);
		} else {
			snprintf(err, errlen, "pool error: %s", why[0] ? why : ss_strerror(rc));
		}
		return -1;
	}
	s->map = globals.cur;
	s->map->streams++;
	atomic_store_explicit(&s->active, 1, memory_order_relaxed);
	s->next = globals.streams;
	globals.streams = s;
	switch_mutex_unlock(globals.mutex);

	if (s->use_read_bug) {
		flags |= SMBF_READ_STREAM;
	}
	/* Copies for the log and the event: once the bug is in, a hangup may
	 * close it and free s at any moment. */
	slot = s->ss.idx;
	use_hook = s->use_hook;
	tracks = s->tracks == SS_TRACKS_MASK_IN ? "inbound" : s->tracks == SS_TRACKS_MASK_OUT ? "outbound" : "both";
	mode = s->use_hook ? "read_hook" : s->use_read_bug ? "media_bug" : "write_only";

	/* Hooks before the bug: a bug closed at once (hangup) makes the poll
	 * thread clear them, and that must come after they are set. */
	if (use_hook) {
		globals.set_read_hook(session, ais_read_hook, s);
	}
	switch_core_event_hook_add_recv_dtmf(session, ais_on_dtmf);
	if (switch_core_media_bug_add(session, AIS_BUG_NAME, a->target, ais_bug_callback, s, 0, flags, &s->bug) != SWITCH_STATUS_SUCCESS) {
		atomic_store_explicit(&s->active, 0, memory_order_relaxed);
		if (use_hook) {
			globals.set_read_hook(session, NULL, NULL);
		}
		switch_core_event_hook_remove_recv_dtmf(session, ais_on_dtmf);
		switch_mutex_lock(globals.mutex);
		s->ended = s->bug_closed = s->hook_cleared = 1;
		ais_finalize_locked(s);
		switch_mutex_unlock(globals.mutex);
		snprintf(err, errlen, "cannot add media bug");
		return -1;
	}

	switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_INFO,
					  "ai_stream: streaming to %s, slot %u, %u Hz %s, tracks %s, inbound via %s\n",
					  a->target, slot, rimpl.actual_samples_per_second, rimpl.iananame, tracks, mode);
	if ((event = ais_event(session, NULL, AIS_EV_START))) {
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Target", a->target);
		switch_event_add_header(event, SWITCH_STACK_BOTTOM, "AI-Stream-Channel-Rate", "%u", rimpl.actual_samples_per_second);
		switch_event_add_header(event, SWITCH_STACK_BOTTOM, "AI-Stream-Sample-Rate", "%u",
								a->sample_rate ? a->sample_rate : rimpl.actual_samples_per_second);
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Tracks", tracks);
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Mode", mode);
		switch_event_add_header(event, SWITCH_STACK_BOTTOM, "AI-Stream-Slot", "%u", slot);
		switch_event_fire(&event);
	}
	return 0;
}

/* ctl_mutex held. */
static int ais_stop(switch_core_session_t *session, uint32_t end_reason, char *err, size_t errlen)
{
	const char *reason = end_reason == SS_END_UNLOAD ? "unload" : "stop";
	const char *uuid = switch_core_session_get_uuid(session);
	ais_stream *s;
	switch_media_bug_t *bug;
	switch_event_t *event;
	int use_hook;

	switch_mutex_lock(globals.mutex);
	if (!(s = ais_find_locked(uuid, 1))) {
		switch_mutex_unlock(globals.mutex);
		snprintf(err, errlen, "no stream running");
		return -1;
	}
	s->ended = 1;
	s->end_reason = end_reason;    /* before the bug's CLOSE, which may finalize s */
	atomic_store_explicit(&s->active, 0, memory_order_relaxed);
	bug = s->bug;
	use_hook = s->use_hook;
	switch_mutex_unlock(globals.mutex);

	/* Nothing of ours is locked here: clearing the hook waits for a frame in
	 * flight, removing the bug for a callback in flight. */
	if (use_hook) {
		globals.set_read_hook(session, NULL, NULL);
	}
	switch_core_event_hook_remove_recv_dtmf(session, ais_on_dtmf);
	if (bug) {
		switch_core_media_bug_remove(session, &bug);   /* CLOSE: bug_closed = 1 */
	}
	if ((event = ais_event(session, NULL, AIS_EV_STOP))) {
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Reason", reason);
		switch_event_fire(&event);
	}
	switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_INFO, "ai_stream: stopped (%s)\n", reason);

	if (use_hook) {
		/* Without a hook, hook_cleared was already 1 and the bug's CLOSE freed s. */
		switch_mutex_lock(globals.mutex);
		s->hook_cleared = 1;
		ais_finalize_locked(s);
		switch_mutex_unlock(globals.mutex);
	}
	return 0;
}

static const char *ais_link_name(uint32_t link)
{
	switch (link) {
	case SS_LINK_NONE: return "pending";
	case SS_LINK_CONNECTING: return "connecting";
	case SS_LINK_STREAMING: return "streaming";
	case SS_LINK_RETRYING: return "retrying";
	case SS_LINK_FAILED: return "failed";
	default: return "unknown";
	}
}

static void ais_status(const char *uuid, switch_stream_handle_t *stream)
{
	ais_stream *s;
	const char *daemon;

	switch_mutex_lock(globals.mutex);
	if (!globals.cur || !ss_pool_daemon_alive(&globals.cur->pool, ss_now_ns())) {
		char why[1024];
		ais_pool_refresh_locked(why, sizeof(why));
	}
	daemon = !globals.cur ? "absent" : ss_health_name(ss_pool_daemon_health(&globals.cur->pool, ss_now_ns()));
	if (!(s = ais_find_locked(uuid, 1))) {
		stream->write_function(stream, "+OK idle daemon=%s\n", daemon);
	} else {
		stream->write_function(stream,
							   "+OK running target=%s slot=%u link=%s mode=%s channel_rate=%u sample_rate=%u tracks=%s tls=%s "
							   "frames_in=%llu frames_out=%llu tts_frames=%llu skipped=%llu write_errors=%llu daemon=%s\n",
							   s->target, s->ss.idx, ais_link_name(ss_stream_link(&s->ss)),
							   s->use_hook ? "read_hook" : s->use_read_bug ? "media_bug" : "write_only",
							   s->rate, s->requested_rate ? s->requested_rate : s->rate,
							   s->tracks == SS_TRACKS_MASK_IN ? "inbound" : s->tracks == SS_TRACKS_MASK_OUT ? "outbound" : "both",
							   s->tls ? "true" : "false",
							   (unsigned long long) ais_get(&s->frames_in), (unsigned long long) ais_get(&s->frames_out),
							   (unsigned long long) ais_get(&s->tts_frames), (unsigned long long) ais_get(&s->frames_skipped),
							   (unsigned long long) ais_get(&s->write_errors), daemon);
	}
	switch_mutex_unlock(globals.mutex);
}

/* -------------------------------------------------------- control thread */

typedef struct ais_action {
	uint16_t type;
	char uuid[SWITCH_UUID_FORMATTED_LENGTH + 1];
	char *text;
	struct ais_action *next;
} ais_action;

static void ais_queue(ais_action ***tail, uint16_t type, const char *uuid, const char *text)
{
	ais_action *a = calloc(1, sizeof(*a));
	if (!a) return;
	a->type = type;
	switch_copy_string(a->uuid, uuid, sizeof(a->uuid));
	a->text = strdup(text ? text : "");
	**tail = a;
	*tail = &a->next;
}

/* SS_CTL_SEND_DTMF is binary (uint32 LE ms per digit, then the digits): queued
 * as the "digits@ms" text switch_core_session_send_dtmf_string takes. The
 * daemon checked the digits; they are checked again, as for transfers. */
static void ais_queue_dtmf(ais_action ***tail, const char *uuid, const char *buf, long n)
{
	const uint8_t *u = (const uint8_t *) buf;
	char text[64];
	long i;

	for (i = 4; i < n && buf[i] && strchr("0123456789*#ABCDwW", buf[i]); i++);
	if (n < 5 || n > 4 + 32 || i != n) {
		ais_queue(tail, SS_CTL_ERROR, uuid, "malformed send_dtmf from the daemon");
		return;
	}
	switch_snprintf(text, sizeof(text), "%.*s@%u", (int) (n - 4), buf + 4,
					(unsigned) (u[0] | u[1] << 8 | u[2] << 16 | (uint32_t) u[3] << 24));
	ais_queue(tail, SS_CTL_SEND_DTMF, uuid, text);
}

/* The daemon checked the transfer already; check again against our own
 * transfer-allow: neither the daemon nor the AI server picks the dialplan. */
static void ais_transfer(switch_core_session_t *session, const char *text)
{
	switch_channel_t *channel = switch_core_session_get_channel(session);
	switch_caller_profile_t *profile = switch_channel_get_caller_profile(channel);
	const char *own = profile && profile->context ? profile->context : "default";
	ss_transfer t;
	const char *why = ss_action_transfer(text, globals.transfer_allow, own, &t);

	if (why) {
		switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_WARNING, "ai_stream: transfer refused: %s\n", why);
		ais_fire_error(session, NULL, why);
		return;
	}
	switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_INFO, "ai_stream: transfer to %s %s %s from AI server\n",
					  t.destination, t.dialplan, t.context);
	switch_ivr_session_transfer(session, t.destination, t.dialplan, t.context);
}

static void ais_run_action(ais_action *a)
{
	switch_core_session_t *session;
	switch_event_t *event;

	switch (a->type) {
	case SS_CTL_HANGUP:
	case SS_CTL_TRANSFER:
		if (!(session = switch_core_session_locate(a->uuid))) {
			break;
		}
		if (a->type == SS_CTL_HANGUP) {
			/* Only a name in FreeSWITCH's cause table: not a number, not NONE. */
			switch_call_cause_t cause = ss_action_cause(a->text) ? SWITCH_CAUSE_NONE : switch_channel_str2cause(a->text);
			if (cause == SWITCH_CAUSE_NONE) {
				switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_WARNING, "ai_stream: hangup refused: not a cause name\n");
				ais_fire_error(session, NULL, "hangup refused: not a cause name");
			} else {
				switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_INFO, "ai_stream: hangup (%s) from AI server\n",
								  switch_channel_cause2str(cause));
				switch_channel_hangup(switch_core_session_get_channel(session), cause);
			}
		} else {
			ais_transfer(session, a->text);
		}
		switch_core_session_rwunlock(session);
		break;
	case SS_CTL_MARK:
		if ((event = ais_event(NULL, a->uuid, AIS_EV_MARK))) {
			switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Mark", a->text);
			switch_event_fire(&event);
		}
		break;
	case SS_CTL_EVENT:
		if ((event = ais_event(NULL, a->uuid, AIS_EV_EVENT))) {
			/* {"name": ..., "data": {...}}: the name also as a header, for filters */
			cJSON *json = cJSON_Parse(a->text);
			cJSON *name = json ? cJSON_GetObjectItem(json, "name") : NULL;
			if (name && cJSON_IsString(name) && name->valuestring) {
				switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Event-Name", name->valuestring);
			}
			if (json) {
				cJSON_Delete(json);
			}
			switch_event_add_body(event, "%s", a->text);
			switch_event_fire(&event);
		}
		break;
	case SS_CTL_SEND_DTMF:
		if ((session = switch_core_session_locate(a->uuid))) {
			switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_INFO, "ai_stream: DTMF %s from AI server\n", a->text);
			if (switch_core_session_send_dtmf_string(session, a->text) != SWITCH_STATUS_SUCCESS) {
				switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_WARNING, "ai_stream: DTMF %s not sent\n", a->text);
			}
			switch_core_session_rwunlock(session);
		}
		break;
	case SS_CTL_ERROR:
		switch_log_printf(SWITCH_CHANNEL_UUID_LOG(a->uuid), SWITCH_LOG_WARNING, "ai_stream: error from daemon: %s\n", a->text);
		ais_fire_error(NULL, a->uuid, a->text);
		break;
	default:
		switch_log_printf(SWITCH_CHANNEL_UUID_LOG(a->uuid), SWITCH_LOG_DEBUG, "ai_stream: ignoring control message type %u\n", a->type);
		break;
	}
}

/* A bug closed without our stop (hangup): clear the read hook here, where
 * no bug lock is held, then let the slot go. */
static void ais_detach(const char *uuid)
{
	switch_core_session_t *session = switch_core_session_force_locate(uuid);
	ais_stream *s;

	if (session) {
		if (globals.set_read_hook) {
			globals.set_read_hook(session, NULL, NULL);
		}
		switch_core_event_hook_remove_recv_dtmf(session, ais_on_dtmf);
		switch_core_session_rwunlock(session);
	}
	/* Without the session there is nothing left that could call the hook. */
	switch_mutex_lock(globals.mutex);
	for (s = globals.streams; s; s = s->next) {
		if (s->detach_requested && !strcmp(s->uuid, uuid)) {
			s->detach_requested = 0;
			s->hook_cleared = 1;
			ais_finalize_locked(s);
			break;
		}
	}
	switch_mutex_unlock(globals.mutex);
}

static void *SWITCH_THREAD_FUNC ais_poll_thread(switch_thread_t *thread, void *obj)
{
	static char buf[SS_CTL_MSG_MAX + 1];
	uint64_t next_stat = 0;

	(void) thread;
	(void) obj;
	while (globals.running) {
		ais_action *head = NULL, **tail = &head, *a;
		ais_stream *s;
		uint64_t now = ss_now_ns();
		int health_now = -1;           /* set when it changes: report it */
		uint64_t stale_ms = 0;
		char detach[16][SWITCH_UUID_FORMATTED_LENGTH + 1];
		int ndetach = 0, i;

		switch_mutex_lock(globals.mutex);
		if (globals.cur) {
			int health = ss_pool_daemon_health(&globals.cur->pool, now);
			if (health != SS_HEALTH_ALIVE && now >= next_stat) {
				/* The daemon may come back with a new pool file. */
				char why[1024];
				next_stat = now + AIS_RESTAT_NS;
				ais_pool_refresh_locked(why, sizeof(why));
				health = ss_pool_daemon_health(&globals.cur->pool, now);
			}
			/* Down once reported stays reported: a stopped daemon's pool does not go on to "lost". */
			if (health != globals.daemon_health && (health == SS_HEALTH_ALIVE || globals.daemon_health == SS_HEALTH_ALIVE)) {
				globals.daemon_health = health_now = health;
				stale_ms = ss_pool_stale_ns(&globals.cur->pool) / 1000000;
			}
		}
		for (s = globals.streams; s; s = s->next) {
			if (s->detach_requested && ndetach < (int) (sizeof(detach) / sizeof(detach[0]))) {
				switch_copy_string(detach[ndetach++], s->uuid, sizeof(detach[0]));
			}
			if (s->ended) {
				continue;
			}
			for (i = 0; i < AIS_TAKE_PER_TICK; i++) {
				uint16_t type = 0;
				long n = ss_stream_take(&s->ss, &type, buf, sizeof(buf));
				if (n < 0) {
					ais_queue(&tail, SS_CTL_ERROR, s->uuid, ss_strerror((int) n));
					break;
				}
				if (n == 0 && type == 0) {
					break;
				}
				if (type == SS_CTL_SEND_DTMF) {
					ais_queue_dtmf(&tail, s->uuid, buf, n);
				} else {
					ais_queue(&tail, type, s->uuid, buf);
				}
			}
		}
		switch_mutex_unlock(globals.mutex);

		if (health_now == SS_HEALTH_STOPPED) {
			switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_WARNING, "ai_stream: smartstream daemon stopped (clean shutdown, pool %s)\n",
							  globals.pool_path);
			ais_fire_error(NULL, NULL, "daemon stopped");
		} else if (health_now == SS_HEALTH_LOST) {
			switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "ai_stream: smartstream daemon lost (no heartbeat for %llu ms in %s)\n",
							  (unsigned long long) stale_ms, globals.pool_path);
			ais_fire_error(NULL, NULL, "daemon lost");
		} else if (health_now == SS_HEALTH_ALIVE) {
			switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_NOTICE, "ai_stream: smartstream daemon is back\n");
			ais_fire_error(NULL, NULL, "daemon back");
		}
		for (i = 0; i < ndetach; i++) {
			ais_detach(detach[i]);
		}
		while ((a = head)) {
			head = a->next;
			ais_run_action(a);
			free(a->text);
			free(a);
		}
		switch_yield(AIS_POLL_US);
	}
	return NULL;
}

/* ------------------------------------------------------ API and dialplan */

/* "<uuid> <cmd> <rest>": argv[0] uuid, argv[1] cmd, rest unsplit (JSON). */
SWITCH_STANDARD_API(ais_api)
{
	char *dup = NULL, *uuid, *verb, *rest = NULL, *p;
	char err[2048] = "";
	switch_core_session_t *lsession = NULL;

	(void) session;
	if (zstr(cmd) || !(dup = strdup(cmd))) {
		stream->write_function(stream, "-ERR bad arguments: usage: uuid_ai_stream %s\n", AIS_SYNTAX);
		return SWITCH_STATUS_SUCCESS;
	}
	uuid = dup;
	while (*uuid == ' ') uuid++;
	if ((p = strchr(uuid, ' '))) {
		*p++ = '\0';
		while (*p == ' ') p++;
		verb = p;
		if ((p = strchr(verb, ' '))) {
			*p++ = '\0';
			rest = p;
		}
	} else {
		verb = NULL;
	}
	if (zstr(uuid) || zstr(verb)) {
		stream->write_function(stream, "-ERR bad arguments: usage: uuid_ai_stream %s\n", AIS_SYNTAX);
		goto done;
	}
	if (strcasecmp(verb, "start") && strcasecmp(verb, "stop") && strcasecmp(verb, "send_payload") && strcasecmp(verb, "status")) {
		stream->write_function(stream, "-ERR bad arguments: unknown command '%s'\n", verb);
		goto done;
	}
	if (!(lsession = switch_core_session_locate(uuid))) {
		stream->write_function(stream, "-ERR no such channel %s\n", uuid);
		goto done;
	}

	if (!strcasecmp(verb, "start")) {
		ais_args a;
		switch_mutex_lock(globals.ctl_mutex);
		if (ais_parse(switch_core_session_get_channel(lsession), rest, &a, err, sizeof(err)) == 0) {
			if (ais_start(lsession, &a, err, sizeof(err)) == 0) {
				stream->write_function(stream, "+OK\n");
			} else {
				stream->write_function(stream, "-ERR %s\n", err);
			}
		} else {
			stream->write_function(stream, "-ERR bad arguments: %s\n", err);
		}
		switch_mutex_unlock(globals.ctl_mutex);
	} else if (!strcasecmp(verb, "stop")) {
		switch_mutex_lock(globals.ctl_mutex);
		if (ais_stop(lsession, SS_END_STOP, err, sizeof(err)) == 0) {
			stream->write_function(stream, "+OK\n");
		} else {
			stream->write_function(stream, "-ERR %s\n", err);
		}
		switch_mutex_unlock(globals.ctl_mutex);
	} else if (!strcasecmp(verb, "send_payload")) {
		char jerr[128];
		ais_stream *s;
		int rc;
		if (zstr(rest)) {
			stream->write_function(stream, "-ERR invalid JSON: empty payload\n");
		} else if (ais_check_json_object(rest, jerr, sizeof(jerr))) {
			stream->write_function(stream, "-ERR invalid JSON: %s\n", jerr);
		} else if (strlen(rest) > SS_CTL_MSG_MAX) {
			stream->write_function(stream, "-ERR payload too large (%u bytes max)\n", SS_CTL_MSG_MAX);
		} else {
			switch_mutex_lock(globals.mutex);
			if (!(s = ais_find_locked(uuid, 1))) {
				rc = SS_E_STATE;
			} else {
				switch_mutex_lock(s->post_mutex);
				rc = ss_stream_post(&s->ss, SS_CTL_PAYLOAD, rest, (uint32_t) strlen(rest));
				switch_mutex_unlock(s->post_mutex);
			}
			switch_mutex_unlock(globals.mutex);
			if (rc == SS_OK) {
				stream->write_function(stream, "+OK\n");
			} else if (rc == SS_E_STATE) {
				stream->write_function(stream, "-ERR no stream running\n");
			} else if (rc == SS_E_FULL) {
				stream->write_function(stream, "-ERR control ring full: daemon not keeping up\n");
			} else {
				stream->write_function(stream, "-ERR %s\n", ss_strerror(rc));
			}
		}
	} else {
		ais_status(uuid, stream);
	}

  done:
	if (lsession) {
		switch_core_session_rwunlock(lsession);
	}
	free(dup);
	return SWITCH_STATUS_SUCCESS;
}

SWITCH_STANDARD_APP(ais_app)
{
	switch_channel_t *channel = switch_core_session_get_channel(session);
	char *line = switch_core_session_strdup(session, data ? data : "");
	char err[2048] = "";
	int rc;

	switch_mutex_lock(globals.ctl_mutex);
	if (!strcasecmp(line, "stop")) {
		rc = ais_stop(session, SS_END_STOP, err, sizeof(err));
	} else {
		ais_args a;
		rc = ais_parse(channel, line, &a, err, sizeof(err));
		if (rc) {
			char tmp[512];
			switch_snprintf(tmp, sizeof(tmp), "bad arguments: %s", err);
			switch_copy_string(err, tmp, sizeof(err));
		} else {
			rc = ais_start(session, &a, err, sizeof(err));
		}
	}
	switch_mutex_unlock(globals.ctl_mutex);

	if (rc) {
		switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_ERROR, "ai_stream: %s\n", err);
		switch_channel_set_variable_printf(channel, "ai_stream_status", "-ERR %s", err);
		ais_fire_error(session, NULL, err);
	} else {
		switch_channel_set_variable(channel, "ai_stream_status", "+OK");
	}
}

/* --------------------------------------------------------- load / unload */

static void ais_load_config(void)
{
	switch_xml_t cfg, xml, settings, param;

	switch_copy_string(globals.pool_path, AIS_DEFAULT_POOL, sizeof(globals.pool_path));
	globals.pool_owner = SS_OWNER_OF_DIR;
	if (!(xml = switch_xml_open_cfg("ai_stream.conf", &cfg, NULL))) {
		return;              /* no config file: defaults */
	}
	if ((settings = switch_xml_child(cfg, "settings"))) {
		for (param = switch_xml_child(settings, "param"); param; param = param->next) {
			const char *name = switch_xml_attr_soft(param, "name");
			const char *value = switch_xml_attr_soft(param, "value");
			if (!strcasecmp(name, "pool-path") && !zstr(value)) {
				switch_copy_string(globals.pool_path, value, sizeof(globals.pool_path));
			} else if (!strcasecmp(name, "transfer-allow")) {
				switch_copy_string(globals.transfer_allow, value, sizeof(globals.transfer_allow));
			} else if (!strcasecmp(name, "pool-owner") && !zstr(value)) {
				/* The daemon's user (name or uid): a pool owned by anyone else is refused. */
				struct passwd *pw = getpwnam(value);
				char *end = NULL;
				unsigned long uid = strtoul(value, &end, 10);
				if (pw) {
					globals.pool_owner = pw->pw_uid;
				} else if (end && !*end && uid < (unsigned long) SS_OWNER_OF_DIR) {
					globals.pool_owner = (uid_t) uid;
				} else {
					switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR,
									  "ai_stream: pool-owner %s: no such user; trusting the owner of the pool's directory\n", value);
				}
			}
		}
	}
	switch_xml_free(xml);
}

static const char *ais_subclasses[] = { AIS_EV_START, AIS_EV_STOP, AIS_EV_ERROR, AIS_EV_MARK, AIS_EV_EVENT };

SWITCH_MODULE_LOAD_FUNCTION(mod_ai_stream_load)
{
	switch_api_interface_t *api_interface;
	switch_application_interface_t *app_interface;
	switch_threadattr_t *attr = NULL;
	size_t i;

	memset(&globals, 0, sizeof(globals));
	globals.pool = pool;
	switch_mutex_init(&globals.mutex, SWITCH_MUTEX_NESTED, pool);
	switch_mutex_init(&globals.ctl_mutex, SWITCH_MUTEX_NESTED, pool);
	ais_load_config();

	for (i = 0; i < sizeof(ais_subclasses) / sizeof(ais_subclasses[0]); i++) {
		if (switch_event_reserve_subclass(ais_subclasses[i]) != SWITCH_STATUS_SUCCESS) {
			switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "ai_stream: cannot reserve event subclass %s\n", ais_subclasses[i]);
			return SWITCH_STATUS_TERM;
		}
	}

	/* Is the core patched? One binary serves both. */
	*(void **) (&globals.set_read_hook) = dlsym(RTLD_DEFAULT, "switch_core_session_set_read_hook");
	if (globals.set_read_hook) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_INFO, "ai_stream: core read hook found: inbound audio via the read hook\n");
	} else {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_WARNING,
						  "ai_stream: this FreeSWITCH has no switch_core_session_set_read_hook (0001-core-read-frame-hook.patch "
						  "not applied): inbound audio falls back to a read media bug\n");
	}

	*module_interface = switch_loadable_module_create_module_interface(pool, modname);
	SWITCH_ADD_API(api_interface, "uuid_ai_stream", "Stream call audio to the SmartStream daemon", ais_api, AIS_SYNTAX);
	SWITCH_ADD_APP(app_interface, "ai_stream", "Stream call audio to an AI server", "Stream call audio to an AI server through SmartStream",
				   ais_app, AIS_APP_SYNTAX, SAF_NONE);
	switch_console_set_complete("add uuid_ai_stream ::console::list_uuid start");
	switch_console_set_complete("add uuid_ai_stream ::console::list_uuid stop");
	switch_console_set_complete("add uuid_ai_stream ::console::list_uuid send_payload");
	switch_console_set_complete("add uuid_ai_stream ::console::list_uuid status");

	globals.running = 1;
	switch_threadattr_create(&attr, pool);
	switch_threadattr_stacksize_set(attr, SWITCH_THREAD_STACKSIZE);
	if (switch_thread_create(&globals.thread, attr, ais_poll_thread, NULL, pool) != SWITCH_STATUS_SUCCESS) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "ai_stream: cannot start the control thread\n");
		return SWITCH_STATUS_TERM;
	}
	switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_INFO, "ai_stream: loaded, pool %s\n", globals.pool_path);
	return SWITCH_STATUS_SUCCESS;
}

SWITCH_MODULE_SHUTDOWN_FUNCTION(mod_ai_stream_shutdown)
{
	switch_status_t st;
	size_t i;

	globals.running = 0;
	if (globals.thread) {
		switch_thread_join(&st, globals.thread);
		globals.thread = NULL;
	}

	/* Stop every stream: our callbacks must be gone before the code is. */
	switch_mutex_lock(globals.ctl_mutex);
	for (;;) {
		char uuid[SWITCH_UUID_FORMATTED_LENGTH + 1];
		int running, tries;
		switch_core_session_t *session;
		ais_stream *s;

		switch_mutex_lock(globals.mutex);
		if (!(s = globals.streams)) {
			switch_mutex_unlock(globals.mutex);
			break;
		}
		switch_copy_string(uuid, s->uuid, sizeof(uuid));
		running = !s->ended;
		switch_mutex_unlock(globals.mutex);

		session = switch_core_session_force_locate(uuid);
		if (session && running) {
			char err[128];
			ais_stop(session, SS_END_UNLOAD, err, sizeof(err));
		} else if (session) {
			ais_detach(uuid);
		}
		if (session) {
			switch_core_session_rwunlock(session);
		}
		/* Whatever is left belongs to a session being destroyed: its bug
		 * closes on its own shortly; wait for that, then let the slot go. */
		for (tries = 0; tries < 100; tries++) {
			int done;
			switch_mutex_lock(globals.mutex);
			done = ais_find_locked(uuid, 0) != s || s->bug_closed;
			switch_mutex_unlock(globals.mutex);
			if (done) break;
			switch_yield(10000);
		}
		switch_mutex_lock(globals.mutex);
		if (ais_find_locked(uuid, 0) == s) {
			s->ended = s->hook_cleared = s->bug_closed = 1;
			ais_finalize_locked(s);
		}
		switch_mutex_unlock(globals.mutex);
	}
	switch_mutex_unlock(globals.ctl_mutex);

	switch_mutex_lock(globals.mutex);
	while (globals.maps) {
		ais_map *m = globals.maps;
		globals.maps = m->next;
		ss_pool_detach(&m->pool);
		free(m);
	}
	globals.cur = NULL;
	switch_mutex_unlock(globals.mutex);

	for (i = 0; i < sizeof(ais_subclasses) / sizeof(ais_subclasses[0]); i++) {
		switch_event_free_subclass(ais_subclasses[i]);
	}
	switch_console_set_complete("del uuid_ai_stream");
	return SWITCH_STATUS_SUCCESS;
}
