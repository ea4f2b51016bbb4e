/*
 * ais_control.c: the module's control thread. Every 20 ms it takes what the
 * daemon sent for each stream (hangup, transfer, mark, event, error,
 * send_dtmf) and runs it outside the stream lock, follows the daemon's health
 * (stopped, lost, back; a new pool file), clears the read hook of streams
 * whose bug closed under them, and reports TTS that nothing plays (the
 * channel parked: nothing writes frames for the write-replace bug to fill).
 * For lazy_bug streams it attaches the write-replace bug when TTS becomes
 * pending and removes it once none has been for AIS_BUG_IDLE_TICKS: the TTS
 * waits in the down ring meanwhile, so nothing is lost, and the first frame
 * plays at most one tick (20 ms) plus the attach later.
 */
#include "mod_ai_stream.h"

#define AIS_POLL_US 20000
#define AIS_TAKE_PER_TICK 32              /* control messages per stream per tick */
#define AIS_RESTAT_NS 1000000000ull       /* while the daemon is gone: look for a new pool file */
#define AIS_UNPLAYED_TICKS 50             /* ~1 s of TTS queued with no write-replace callback */
#define AIS_BUG_IDLE_TICKS 75             /* lazy_bug: 1.5 s with no TTS pending and the TTS bug goes */
#define AIS_BUG_OPS_PER_TICK 64           /* TTS bugs added or removed per tick; the rest next tick */
#define AIS_UNPLAYED_REASON "TTS queued but nothing writes audio to this channel (parked?): use ai_stream_bot"

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
	const char *why = ss_action_transfer(text, ais_globals.transfer_allow, own, &t);

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

/* Under ais_globals.mutex, once a tick. True once per stream: TTS has been
 * queued (and not paused) for AIS_UNPLAYED_TICKS while no write-replace
 * callback ran, so nothing writes audio the bug could replace. */
static int ais_unplayed_tts(ais_stream *s)
{
	uint64_t replaces = ais_get(&s->replaces);

	if (replaces != s->seen_replaces || !ss_stream_tts_queued(&s->ss)) {
		s->seen_replaces = replaces;
		s->idle_ticks = 0;
		return 0;
	}
	if (s->unplayed_reported || ++s->idle_ticks < AIS_UNPLAYED_TICKS) {
		return 0;
	}
	s->unplayed_reported = 1;
	return 1;
}

/* Under ais_globals.mutex, once a tick, for a lazy_bug stream: 1 attach,
 * 0 remove, -1 nothing to do. Sets bug_busy for the caller's ais_tts_bug. */
static int ais_bug_due(ais_stream *s)
{
	int due = -1;

	if (!s->lazy_bug || s->bug_busy) {
		return -1;
	}
	/* With no bug only the ring's positions are read (clean cache lines): a
	 * listening call costs two loads a tick. A pause keeps a bug, never adds one. */
	if (!s->bug) {
		due = ss_stream_tts_buffered(&s->ss) ? 1 : -1;
	} else if (ss_stream_tts_buffered(&s->ss) || ss_stream_tts_paused(&s->ss)) {
		s->tts_idle_ticks = 0;
	} else if (++s->tts_idle_ticks >= AIS_BUG_IDLE_TICKS) {
		due = 0;
	}
	if (due >= 0) {
		s->bug_busy = 1;
	}
	return due;
}

void *SWITCH_THREAD_FUNC ais_poll_thread(switch_thread_t *thread, void *obj)
{
	static char buf[SS_CTL_MSG_MAX + 1];
	uint64_t next_stat = 0;

	(void) thread;
	(void) obj;
	while (ais_globals.running) {
		ais_action *head = NULL, **tail = &head, *a;
		ais_stream *s;
		uint64_t now = ss_now_ns();
		int health_now = -1;           /* set when it changes: report it */
		uint64_t stale_ms = 0;
		char detach[16][SWITCH_UUID_FORMATTED_LENGTH + 1];
		char unplayed[16][SWITCH_UUID_FORMATTED_LENGTH + 1];
		struct { ais_stream *s; int attach; } bugs[AIS_BUG_OPS_PER_TICK];
		int ndetach = 0, nunplayed = 0, nbugs = 0, i;

		switch_mutex_lock(ais_globals.mutex);
		if (ais_globals.cur) {
			int health = ss_pool_daemon_health(&ais_globals.cur->pool, now);
			if (health != SS_HEALTH_ALIVE && now >= next_stat) {
				/* The daemon may come back with a new pool file. */
				char why[1024];
				next_stat = now + AIS_RESTAT_NS;
				ais_pool_refresh_locked(why, sizeof(why));
				health = ss_pool_daemon_health(&ais_globals.cur->pool, now);
			}
			/* Down once reported stays reported: a stopped daemon's pool does not go on to "lost". */
			if (health != ais_globals.daemon_health && (health == SS_HEALTH_ALIVE || ais_globals.daemon_health == SS_HEALTH_ALIVE)) {
				ais_globals.daemon_health = health_now = health;
				stale_ms = ss_pool_stale_ns(&ais_globals.cur->pool) / 1000000;
			}
		}
		for (s = ais_globals.streams; s; s = s->next) {
			if (s->detach_requested && ndetach < (int) (sizeof(detach) / sizeof(detach[0]))) {
				switch_copy_string(detach[ndetach++], s->uuid, sizeof(detach[0]));
			}
			if (s->ended) {
				continue;
			}
			/* A lazy stream without its bug gets one at this tick if TTS waits. */
			if ((s->bug || !s->lazy_bug) && nunplayed < (int) (sizeof(unplayed) / sizeof(unplayed[0])) && ais_unplayed_tts(s)) {
				switch_copy_string(unplayed[nunplayed++], s->uuid, sizeof(unplayed[0]));
			}
			if (nbugs < AIS_BUG_OPS_PER_TICK && (bugs[nbugs].attach = ais_bug_due(s)) >= 0) {
				bugs[nbugs++].s = s;       /* bug_busy: s stays until ais_tts_bug */
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
		switch_mutex_unlock(ais_globals.mutex);

		for (i = 0; i < nbugs; i++) {
			ais_tts_bug(bugs[i].s, bugs[i].attach);
		}
		if (health_now == SS_HEALTH_STOPPED) {
			switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_WARNING, "ai_stream: smartstream daemon stopped (clean shutdown, pool %s)\n",
							  ais_globals.pool_path);
			ais_fire_error(NULL, NULL, "daemon stopped");
		} else if (health_now == SS_HEALTH_LOST) {
			switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "ai_stream: smartstream daemon lost (no heartbeat for %llu ms in %s)\n",
							  (unsigned long long) stale_ms, ais_globals.pool_path);
			ais_fire_error(NULL, NULL, "daemon lost");
		} else if (health_now == SS_HEALTH_ALIVE) {
			switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_NOTICE, "ai_stream: smartstream daemon is back\n");
			ais_fire_error(NULL, NULL, "daemon back");
		}
		for (i = 0; i < ndetach; i++) {
			ais_detach(detach[i]);
		}
		for (i = 0; i < nunplayed; i++) {
			switch_log_printf(SWITCH_CHANNEL_UUID_LOG(unplayed[i]), SWITCH_LOG_ERROR, "ai_stream: %s\n", AIS_UNPLAYED_REASON);
			ais_fire_error(NULL, unplayed[i], AIS_UNPLAYED_REASON);
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
