/*
 * ais_stream.c: one stream's life cycle. The pool mapping it lives in, start
 * (claim a slot, set the read hook, add the media bug or the state handler),
 * stop and hangup, the TTS bug the control thread adds and removes (lazy_bug),
 * and the slot's release once nothing can touch it any more; the media
 * callbacks themselves (read hook, write-replace bug, DTMF hook).
 *
 * Media thread rules: ais_read_hook and the bug's READ/WRITE_REPLACE take no
 * lock, allocate nothing and make no system call per frame (ss_now_ns is the
 * vDSO clock); they only read s->active to know the stream is still on.
 */
#include "mod_ai_stream.h"


/* Under ais_globals.mutex. Make ais_globals.cur a mapping of the file at pool_path,
 * mapping it again if the daemon has put a new file there. */
int ais_pool_refresh_locked(char *err, size_t errlen)
{
	struct stat st;
	ais_map *m;
	int rc;

	if (stat(ais_globals.pool_path, &st) < 0) {
		if (ais_globals.cur) {
			return SS_OK;       /* keep the old mapping; heartbeat says the rest */
		}
		if (errno == ENOENT) {
			/* Nothing to keep a waiting stream's audio in either. */
			snprintf(err, errlen, "pool %s does not exist: the daemon has not started since boot", ais_globals.pool_path);
		} else {
			snprintf(err, errlen, "pool %s: %s", ais_globals.pool_path, strerror(errno));
		}
		return SS_E_NODAEMON;
	}
	if (ais_globals.cur && ais_globals.cur->dev == st.st_dev && ais_globals.cur->ino == st.st_ino) {
		return SS_OK;
	}
	if (!(m = calloc(1, sizeof(*m)))) {
		snprintf(err, errlen, "out of memory");
		return SS_E_SYS;
	}
	if ((rc = ss_pool_attach_as(ais_globals.pool_path, ais_globals.pool_owner, &m->pool, err, errlen)) != SS_OK) {
		free(m);
		return ais_globals.cur ? SS_OK : rc;
	}
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	m->next = ais_globals.maps;
	ais_globals.maps = m;
	if (ais_globals.cur && !ais_globals.cur->streams) {
		ais_map **pp;
		for (pp = &ais_globals.maps; *pp; pp = &(*pp)->next) {
			if (*pp == ais_globals.cur) {
				*pp = ais_globals.cur->next;
				break;
			}
		}
		ss_pool_detach(&ais_globals.cur->pool);
		free(ais_globals.cur);
	}
	ais_globals.cur = m;
	switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_NOTICE, "ai_stream: attached pool %s (%u slots)\n",
					  ais_globals.pool_path, m->pool.slot_count);
	return SS_OK;
}

/* ------------------------------------------------------- stream lifetime */

ais_stream *ais_find_locked(const char *uuid, int running_only)
{
	ais_stream *s;
	for (s = ais_globals.streams; s; s = s->next) {
		if (!strcmp(s->uuid, uuid) && (!running_only || !s->ended)) {
			return s;
		}
	}
	return NULL;
}

/* Under ais_globals.mutex. Once nothing can touch the slot any more (stopped, bug
 * closed, hook cleared) hand it back to the daemon and free the stream. */
void ais_finalize_locked(ais_stream *s)
{
	ais_stream **pp;
	ais_map *map = s->map;
	int rc;

	if (!(s->ended && s->bug_closed && s->hook_cleared) || s->held || s->bug || s->bug_busy) {
		return;
	}
	if ((rc = ss_stream_close(&s->ss, s->end_reason)) == SS_E_CORRUPT) {
		switch_log_printf(SWITCH_CHANNEL_UUID_LOG(s->uuid), SWITCH_LOG_ERROR,
						  "ai_stream: slot %u: its generation was overwritten during the call; released it (%u so far)\n",
						  s->ss.idx, ++ais_globals.slots_corrupted);
	} else if (rc != SS_OK) {
		switch_log_printf(SWITCH_CHANNEL_UUID_LOG(s->uuid), SWITCH_LOG_DEBUG, "ai_stream: slot %u close: %s\n",
						  s->ss.idx, ss_strerror(rc));
	}
	for (pp = &ais_globals.streams; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	if (map && !--map->streams && map != ais_globals.cur) {
		ais_map **mp;
		for (mp = &ais_globals.maps; *mp; mp = &(*mp)->next) {
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

static void ais_on_bug_close(ais_stream *s, switch_media_bug_t *bug, switch_core_session_t *session)
{
	int fire_stop = 0;
	char uuid[sizeof(s->uuid)];

	switch_mutex_lock(ais_globals.mutex);
	if (s->bug == bug) {
		s->bug = NULL;
	}
	if (s->lazy_bug) {
		/* The TTS bug going (ours, or the hangup's remove_all): the stream
		 * goes on; its end is ais_state_handler's. */
		ais_finalize_locked(s);    /* may free s */
		switch_mutex_unlock(ais_globals.mutex);
		return;
	}
	atomic_store_explicit(&s->active, 0, memory_order_relaxed);
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
	switch_mutex_unlock(ais_globals.mutex);

	if (fire_stop) {
		switch_event_t *event = ais_event(session, uuid, AIS_EV_STOP);
		if (event) {
			switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Reason", "hangup");
			switch_event_fire(&event);
		}
		switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_INFO, "ai_stream: stopped (hangup)\n");
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
			ais_bump(&s->replaces);
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
		ais_on_bug_close(s, bug, switch_core_media_bug_get_session(bug));
		break;
	default:
		break;
	}
	return SWITCH_TRUE;
}

/* When the last bug goes, FreeSWITCH destroys session->bug_codec, which the
 * read path (forced to decode by the read hook) uses outside bug_rwlock:
 * removing it under the codec read lock keeps that decode out. The read
 * thread holds that lock only while it decodes, never while it waits for RTP. */
static void ais_remove_bug(switch_core_session_t *session, switch_media_bug_t *bug)
{
	switch_core_session_lock_codec_read(session);
	switch_core_media_bug_remove(session, &bug);   /* not found (already gone): nothing happens */
	switch_core_session_unlock_codec_read(session);
}

static switch_status_t ais_on_dtmf(switch_core_session_t *session, const switch_dtmf_t *dtmf, switch_dtmf_direction_t direction);
static void ais_end(switch_core_session_t *session, ais_stream *s, const char *reason, int clear_handler);

/* lazy_bug streams: the channel hung up. FreeSWITCH calls on_hangup once, in
 * the session's thread, after removing every media bug; on_destroy catches a
 * stream an API start published while the hangup state was already past. */
static void ais_channel_gone(switch_core_session_t *session)
{
	ais_stream *s;

	switch_mutex_lock(ais_globals.mutex);
	if (!(s = ais_find_locked(switch_core_session_get_uuid(session), 1)) || !s->lazy_bug) {
		switch_mutex_unlock(ais_globals.mutex);
		return;
	}
	/* Handlers are being walked: clearing ours now would make FreeSWITCH skip
	 * the next one. It goes with the channel; on_destroy counts it off. */
	ais_end(session, s, "hangup", 0);
}

static switch_status_t ais_on_hangup(switch_core_session_t *session)
{
	ais_channel_gone(session);
	return SWITCH_STATUS_SUCCESS;
}

static switch_status_t ais_on_destroy(switch_core_session_t *session)
{
	ais_channel_gone(session);
	switch_mutex_lock(ais_globals.mutex);
	if (ais_globals.handler_channels) {
		ais_globals.handler_channels--;
	}
	switch_mutex_unlock(ais_globals.mutex);
	return SWITCH_STATUS_SUCCESS;
}

/* Sticky: transfers and bridges clear every handler that is not. */
static const switch_state_handler_table_t ais_state_handler = {
	.on_hangup = ais_on_hangup,
	.on_destroy = ais_on_destroy,
	.flags = SSH_FLAG_STICKY,
};

/* Whether ais_state_handler is on the channel already (a stream that was
 * stopped clears it, so this is for safety: it must be counted once). */
static int ais_handler_on(switch_channel_t *channel)
{
	const switch_state_handler_table_t *h;
	int i;

	for (i = 0; (h = switch_channel_get_state_handler(channel, i)); i++) {
		if (h == &ais_state_handler) {
			return 1;
		}
	}
	return 0;
}

/* Take ais_state_handler off the channel again (a start that failed, a stop).
 * The caller has the session: it cannot be in its destroy state. */
static void ais_drop_handler(switch_channel_t *channel)
{
	switch_channel_clear_state_handler(channel, &ais_state_handler);
	switch_mutex_lock(ais_globals.mutex);
	if (ais_globals.handler_channels) {
		ais_globals.handler_channels--;
	}
	switch_mutex_unlock(ais_globals.mutex);
}

/* Control thread: attach or remove a lazy_bug stream's TTS bug. s->bug_busy
 * (set by the caller) keeps s allocated; a stop or hangup meanwhile is seen
 * under the mutex, and a bug added too late is removed here. */
void ais_tts_bug(ais_stream *s, int attach)
{
	switch_core_session_t *session = switch_core_session_locate(s->uuid);   /* fails once hung up */
	switch_media_bug_t *bug = NULL;
	int late = 0;

	if (session) {
		switch_mutex_lock(ais_globals.mutex);
		bug = s->bug;
		late = s->ended;
		switch_mutex_unlock(ais_globals.mutex);
		if (attach && !late) {
			if (switch_core_media_bug_add(session, AIS_BUG_NAME, s->target, ais_bug_callback, s, 0, SMBF_WRITE_REPLACE, &bug)
				!= SWITCH_STATUS_SUCCESS) {
				bug = NULL;
				if (!s->bug_add_reported) {    /* retried every tick while TTS is pending: said once */
					s->bug_add_reported = 1;
					switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_ERROR,
									  "ai_stream: cannot add the TTS media bug (retrying each tick)\n");
					ais_fire_error(session, NULL, "cannot add the TTS media bug");
				}
			}
			switch_mutex_lock(ais_globals.mutex);
			if (bug && !(late = s->ended)) {
				s->bug = bug;
			}
			switch_mutex_unlock(ais_globals.mutex);
		}
		if (bug && (late || !attach)) {
			ais_remove_bug(session, bug);    /* CLOSE: s->bug = NULL */
		}
	}
	switch_mutex_lock(ais_globals.mutex);
	s->bug_busy = 0;
	s->tts_idle_ticks = 0;
	ais_finalize_locked(s);              /* may free s */
	switch_mutex_unlock(ais_globals.mutex);
	if (session) {
		switch_core_session_rwunlock(session);
	}
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

	switch_mutex_lock(ais_globals.mutex);
	if ((s = ais_find_locked(switch_core_session_get_uuid(session), 1))) {
		switch_mutex_lock(s->post_mutex);
		rc = ss_stream_post(&s->ss, SS_CTL_DTMF, msg, sizeof(msg));
		switch_mutex_unlock(s->post_mutex);
	}
	switch_mutex_unlock(ais_globals.mutex);
	if (rc != SS_OK) {
		switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_WARNING, "ai_stream: DTMF %c not sent: %s\n",
						  dtmf->digit, ss_strerror(rc));
	}
	return SWITCH_STATUS_SUCCESS;
}


int ais_start(switch_core_session_t *session, ais_args *a, int hold, ais_stream **held_out, int *waiting,
			  char *err, size_t errlen)
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
	switch_media_bug_t *bug = NULL;
	switch_event_t *event;
	uint32_t slot;
	int use_hook, lazy;
	const char *tracks, *mode;
	const char *daemon = "alive";

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
	s->use_hook = (a->tracks & SS_TRACKS_MASK_IN) && ais_globals.set_read_hook;
	s->use_read_bug = (a->tracks & SS_TRACKS_MASK_IN) && !ais_globals.set_read_hook;
	s->hook_cleared = !s->use_hook;
	s->held = hold;
	/* outbound needs every written frame, and the fallback's read bug is there
	 * for the whole call anyway: only inbound-on-the-hook goes without one.
	 * The handler goes on before the stream is published: a hangup that
	 * finds no stream yet is caught again at on_destroy. */
	if (s->use_hook && a->tracks == SS_TRACKS_MASK_IN) {
		int counted = ais_handler_on(channel);
		if (switch_channel_add_state_handler(channel, &ais_state_handler) >= 0) {
			s->lazy_bug = s->handler_set = 1;
			if (!counted) {
				switch_mutex_lock(ais_globals.mutex);
				ais_globals.handler_channels++;
				switch_mutex_unlock(ais_globals.mutex);
			}
		}   /* else the handler table is full: one bug for the whole call, as for outbound */
	}
	s->bug_busy = !s->lazy_bug;    /* until ais_start has recorded its bug */

	switch_mutex_lock(ais_globals.mutex);
	if (ais_find_locked(uuid, 0)) {
		switch_mutex_unlock(ais_globals.mutex);
		if (s->handler_set) {
			ais_drop_handler(channel);
		}
		switch_core_destroy_memory_pool(&pool);
		snprintf(err, errlen, "stream already running");
		return -1;
	}
	rc = ais_pool_refresh_locked(why, sizeof(why));
	*waiting = 0;
	if (rc == SS_OK && !ss_pool_daemon_alive(&ais_globals.cur->pool, ss_now_ns())) {
		/* A waiting stream's rings keep its audio as a live one's do: the
		 * daemon that comes back re-attaches this pool and opens it as new. */
		daemon = ss_health_name(ss_pool_daemon_health(&ais_globals.cur->pool, ss_now_ns()));
		*waiting = a->without_daemon;
		if (!a->without_daemon) {
			rc = SS_E_NODAEMON;
			snprintf(why, sizeof(why), "daemon %s, pool %s", daemon, ais_globals.pool_path);
		}
	}
	if (rc == SS_OK) {
		rc = ss_stream_open_ex(&ais_globals.cur->pool, &call, a->without_daemon ? SS_OPEN_WITHOUT_DAEMON : 0, &s->ss,
							   why, sizeof(why));
	}
	if (rc != SS_OK) {
		switch_mutex_unlock(ais_globals.mutex);
		if (s->handler_set) {
			ais_drop_handler(channel);
		}
		switch_core_destroy_memory_pool(&pool);
		if (rc == SS_E_NODAEMON) {
			snprintf(err, errlen, "no daemon (%s)", why);
		} else if (rc == SS_E_NOSLOT) {
			snprintf(err, errlen, "pool full (%u slots in use)", ais_globals.cur ? ais_globals.cur->pool.slot_count : 0);
		} else if (rc == SS_E_ARG) {
			snprintf(err, errlen, "bad arguments: %s", why);
		} else {
			snprintf(err, errlen, "pool error: %s", why[0] ? why : ss_strerror(rc));
		}
		return -1;
	}
	s->map = ais_globals.cur;
	s->map->streams++;
	atomic_store_explicit(&s->active, 1, memory_order_relaxed);
	s->next = ais_globals.streams;
	ais_globals.streams = s;
	switch_mutex_unlock(ais_globals.mutex);

	if (s->use_read_bug) {
		flags |= SMBF_READ_STREAM;
	}
	/* Copies for the log and the event: once the bug is in, a hangup may
	 * close it and free s at any moment. */
	slot = s->ss.idx;
	use_hook = s->use_hook;
	tracks = s->tracks == SS_TRACKS_MASK_IN ? "inbound" : s->tracks == SS_TRACKS_MASK_OUT ? "outbound" : "both";
	mode = s->use_hook ? "read_hook" : s->use_read_bug ? "media_bug" : "write_only";
	lazy = s->lazy_bug;

	/* Hooks before the bug: a bug closed at once (hangup) makes the poll
	 * thread clear them, and that must come after they are set. */
	if (use_hook) {
		ais_globals.set_read_hook(session, ais_read_hook, s);
	}
	switch_core_event_hook_add_recv_dtmf(session, ais_on_dtmf);
	if (!lazy) {
		/* s->bug_busy keeps s until the bug is recorded: a hangup may close
		 * the bug before switch_core_media_bug_add returns. */
		if (switch_core_media_bug_add(session, AIS_BUG_NAME, a->target, ais_bug_callback, s, 0, flags, &bug) != SWITCH_STATUS_SUCCESS) {
			atomic_store_explicit(&s->active, 0, memory_order_relaxed);
			if (use_hook) {
				ais_globals.set_read_hook(session, NULL, NULL);
			}
			switch_core_event_hook_remove_recv_dtmf(session, ais_on_dtmf);
			switch_mutex_lock(ais_globals.mutex);
			s->ended = s->bug_closed = s->hook_cleared = 1;
			s->held = s->bug_busy = 0;
			ais_finalize_locked(s);
			switch_mutex_unlock(ais_globals.mutex);
			snprintf(err, errlen, "cannot add media bug");
			return -1;
		}
		switch_mutex_lock(ais_globals.mutex);
		if (!s->bug_closed) {
			s->bug = bug;
		}
		s->bug_busy = 0;
		ais_finalize_locked(s);        /* closed already: may free s (not a held one) */
		switch_mutex_unlock(ais_globals.mutex);
	}

	switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_INFO,
					  "ai_stream: streaming to %s, slot %u, %u Hz %s, tracks %s, inbound via %s%s%s%s\n",
					  a->target, slot, rimpl.actual_samples_per_second, rimpl.iananame, tracks, mode,
					  *waiting ? "; waiting for the daemon (" : "", *waiting ? daemon : "", *waiting ? ")" : "");
	if ((event = ais_event(session, NULL, AIS_EV_START))) {
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Target", a->target);
		switch_event_add_header(event, SWITCH_STACK_BOTTOM, "AI-Stream-Channel-Rate", "%u", rimpl.actual_samples_per_second);
		switch_event_add_header(event, SWITCH_STACK_BOTTOM, "AI-Stream-Sample-Rate", "%u",
								a->sample_rate ? a->sample_rate : rimpl.actual_samples_per_second);
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Tracks", tracks);
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Mode", mode);
		switch_event_add_header(event, SWITCH_STACK_BOTTOM, "AI-Stream-Slot", "%u", slot);
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Waiting-For-Daemon", *waiting ? "true" : "false");
		switch_event_fire(&event);
	}
	if (held_out) {
		*held_out = s;   /* s->held: not freed until ais_release */
	}
	return 0;
}

/* End a running stream: ais_globals.mutex is held on entry (s found under
 * it) and released. From ais_stop (stop, unload) and ais_channel_gone
 * (hangup, lazy_bug only; clear_handler 0 there). */
static void ais_end(switch_core_session_t *session, ais_stream *s, const char *reason, int clear_handler)
{
	switch_media_bug_t *bug = s->bug;
	int use_hook = s->use_hook, lazy = s->lazy_bug, handler = clear_handler && s->handler_set;
	switch_event_t *event;

	s->ended = 1;
	if (handler) {
		s->handler_set = 0;
	}
	atomic_store_explicit(&s->active, 0, memory_order_relaxed);
	switch_mutex_unlock(ais_globals.mutex);

	/* Nothing of ours is locked here: clearing the hook waits for a frame in
	 * flight, removing the bug for a callback in flight. A TTS bug the control
	 * thread is adding right now (bug_busy) is removed by it: it sees ended. */
	if (use_hook) {
		ais_globals.set_read_hook(session, NULL, NULL);
	}
	switch_core_event_hook_remove_recv_dtmf(session, ais_on_dtmf);
	if (handler) {
		ais_drop_handler(switch_core_session_get_channel(session));
	}
	if (bug) {
		ais_remove_bug(session, bug);   /* CLOSE: whole-call bug: bug_closed = 1 */
	}
	if ((event = ais_event(session, NULL, AIS_EV_STOP))) {
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Reason", reason);
		switch_event_fire(&event);
	}
	switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_INFO, "ai_stream: stopped (%s)\n", reason);

	if (use_hook) {
		/* Without a hook, hook_cleared was already 1 and the bug's CLOSE freed s. */
		switch_mutex_lock(ais_globals.mutex);
		s->hook_cleared = 1;
		if (lazy) {
			s->bug_closed = 1;
		}
		ais_finalize_locked(s);
		switch_mutex_unlock(ais_globals.mutex);
	}
}

/* ctl_mutex held. */
int ais_stop(switch_core_session_t *session, uint32_t end_reason, char *err, size_t errlen)
{
	ais_stream *s;

	switch_mutex_lock(ais_globals.mutex);
	if (!(s = ais_find_locked(switch_core_session_get_uuid(session), 1))) {
		switch_mutex_unlock(ais_globals.mutex);
		snprintf(err, errlen, "no stream running");
		return -1;
	}
	s->end_reason = end_reason;    /* before the bug's CLOSE, which may finalize s */
	ais_end(session, s, end_reason == SS_END_UNLOAD ? "unload" : "stop", 1);
	return 0;
}

/* A bug closed without our stop (hangup): clear the read hook here, where
 * no bug lock is held, then let the slot go. */
void ais_detach(const char *uuid)
{
	switch_core_session_t *session = switch_core_session_force_locate(uuid);
	ais_stream *s;

	if (session) {
		if (ais_globals.set_read_hook) {
			ais_globals.set_read_hook(session, NULL, NULL);
		}
		switch_core_event_hook_remove_recv_dtmf(session, ais_on_dtmf);
		switch_core_session_rwunlock(session);
	}
	/* Without the session there is nothing left that could call the hook. */
	switch_mutex_lock(ais_globals.mutex);
	for (s = ais_globals.streams; s; s = s->next) {
		if (s->detach_requested && !strcmp(s->uuid, uuid)) {
			s->detach_requested = 0;
			s->hook_cleared = 1;
			ais_finalize_locked(s);
			break;
		}
	}
	switch_mutex_unlock(ais_globals.mutex);
}

void ais_release(ais_stream *s)
{
	switch_mutex_lock(ais_globals.mutex);
	s->held = 0;
	ais_finalize_locked(s);
	switch_mutex_unlock(ais_globals.mutex);
}

/* Unload: stop every stream, for our callbacks must be gone before the code
 * is, then unmap the pool. */
void ais_stop_all(void)
{
	int tries;

	switch_mutex_lock(ais_globals.ctl_mutex);
	for (;;) {
		char uuid[SWITCH_UUID_FORMATTED_LENGTH + 1];
		int running;
		switch_core_session_t *session;
		ais_stream *s;

		switch_mutex_lock(ais_globals.mutex);
		if (!(s = ais_globals.streams)) {
			switch_mutex_unlock(ais_globals.mutex);
			break;
		}
		switch_copy_string(uuid, s->uuid, sizeof(uuid));
		running = !s->ended;
		switch_mutex_unlock(ais_globals.mutex);

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
		 * closes on its own shortly; wait for that, then let the slot go.
		 * An ai_stream_bot lets its stream go at its next frame: freeing it
		 * under the bot is never done, so that wait has no limit. */
		for (tries = 0;; tries++) {
			int done, held;
			switch_mutex_lock(ais_globals.mutex);
			done = ais_find_locked(uuid, 0) != s || (s->bug_closed && !s->held);
			held = !done && s->held;
			switch_mutex_unlock(ais_globals.mutex);
			if (done || (tries >= 100 && !held)) break;
			if (held && tries % 100 == 99) {
				switch_log_printf(SWITCH_CHANNEL_UUID_LOG(uuid), SWITCH_LOG_WARNING, "ai_stream: unload waits for ai_stream_bot to end\n");
			}
			switch_yield(10000);
		}
		switch_mutex_lock(ais_globals.mutex);
		if (ais_find_locked(uuid, 0) == s) {
			s->ended = s->hook_cleared = s->bug_closed = 1;
			s->bug = NULL;
			s->bug_busy = 0;
			ais_finalize_locked(s);
		}
		switch_mutex_unlock(ais_globals.mutex);
	}
	switch_mutex_unlock(ais_globals.ctl_mutex);

	/* A channel that hung up keeps ais_state_handler until its destroy
	 * state: FreeSWITCH reads that table, so the code stays until then. */
	for (tries = 0;; tries++) {
		uint32_t left;
		switch_mutex_lock(ais_globals.mutex);
		left = ais_globals.handler_channels;
		switch_mutex_unlock(ais_globals.mutex);
		if (!left) break;
		if (tries % 100 == 99) {
			switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_WARNING, "ai_stream: unload waits for %u hung-up channels to be destroyed\n", left);
		}
		switch_yield(10000);
	}

	switch_mutex_lock(ais_globals.mutex);
	while (ais_globals.maps) {
		ais_map *m = ais_globals.maps;
		ais_globals.maps = m->next;
		ss_pool_detach(&m->pool);
		free(m);
	}
	ais_globals.cur = NULL;
	switch_mutex_unlock(ais_globals.mutex);
}
