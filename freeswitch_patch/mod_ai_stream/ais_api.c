/*
 * ais_api.c: what FreeSWITCH calls us through: the API uuid_ai_stream, the
 * dialplan apps ai_stream and ai_stream_bot, and the parsing of their
 * arguments (README.md §3, §4).
 */
#include "mod_ai_stream.h"

#define AIS_START_ARGS "[sample_rate=8000|16000|24000|48000] [tracks=inbound|outbound|both] " \
	"[tls=true|false] [start_without_daemon=true|false] [metadata=<JSON object>]"
#define AIS_SYNTAX "<uuid> start <host:port> " AIS_START_ARGS \
	" | <uuid> stop | <uuid> send_payload <JSON object> | <uuid> status"
#define AIS_APP_SYNTAX "[<host:port>] " AIS_START_ARGS " | stop"
#define AIS_BOT_SYNTAX "[<host:port>] " AIS_START_ARGS

/* ------------------------------------------------------------- arguments */

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

static int ais_set_bool(int *out, const char *k, const char *v, char *err, size_t errlen)
{
	if (!strcasecmp(v, "true")) {
		*out = 1;
	} else if (!strcasecmp(v, "false")) {
		*out = 0;
	} else {
		snprintf(err, errlen, "%s '%s': use true or false", k, v);
		return -1;
	}
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
		return ais_set_bool(&a->tls, "tls", v, err, errlen);
	} else if (!strcasecmp(k, "start_without_daemon")) {
		return ais_set_bool(&a->without_daemon, "start_without_daemon", v, err, errlen);
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
	a->without_daemon = ais_globals.start_without_daemon;
	if (channel) {
		if ((v = switch_channel_get_variable(channel, "ai_stream_target")) && *v && ais_set(a, "target", v, err, errlen)) return -1;
		if ((v = switch_channel_get_variable(channel, "ai_stream_sample_rate")) && *v && ais_set(a, "sample_rate", v, err, errlen)) return -1;
		if ((v = switch_channel_get_variable(channel, "ai_stream_tracks")) && *v && ais_set(a, "tracks", v, err, errlen)) return -1;
		if ((v = switch_channel_get_variable(channel, "ai_stream_tls")) && *v && ais_set(a, "tls", v, err, errlen)) return -1;
		if ((v = switch_channel_get_variable(channel, "ai_stream_metadata")) && *v && ais_set(a, "metadata", v, err, errlen)) return -1;
		if ((v = switch_channel_get_variable(channel, "ai_stream_start_without_daemon")) && *v &&
			ais_set(a, "start_without_daemon", v, err, errlen)) return -1;
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

	switch_mutex_lock(ais_globals.mutex);
	if (!ais_globals.cur || !ss_pool_daemon_alive(&ais_globals.cur->pool, ss_now_ns())) {
		char why[1024];
		ais_pool_refresh_locked(why, sizeof(why));
	}
	daemon = !ais_globals.cur ? "absent" : ss_health_name(ss_pool_daemon_health(&ais_globals.cur->pool, ss_now_ns()));
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
	switch_mutex_unlock(ais_globals.mutex);
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
		int waiting;
		switch_mutex_lock(ais_globals.ctl_mutex);
		if (ais_parse(switch_core_session_get_channel(lsession), rest, &a, err, sizeof(err)) == 0) {
			if (ais_start(lsession, &a, 0, NULL, &waiting, err, sizeof(err)) == 0) {
				stream->write_function(stream, waiting ? "+OK (waiting for the daemon)\n" : "+OK\n");
			} else {
				stream->write_function(stream, "-ERR %s\n", err);
			}
		} else {
			stream->write_function(stream, "-ERR bad arguments: %s\n", err);
		}
		switch_mutex_unlock(ais_globals.ctl_mutex);
	} else if (!strcasecmp(verb, "stop")) {
		switch_mutex_lock(ais_globals.ctl_mutex);
		if (ais_stop(lsession, SS_END_STOP, err, sizeof(err)) == 0) {
			stream->write_function(stream, "+OK\n");
		} else {
			stream->write_function(stream, "-ERR %s\n", err);
		}
		switch_mutex_unlock(ais_globals.ctl_mutex);
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
			switch_mutex_lock(ais_globals.mutex);
			if (!(s = ais_find_locked(uuid, 1))) {
				rc = SS_E_STATE;
			} else {
				switch_mutex_lock(s->post_mutex);
				rc = ss_stream_post(&s->ss, SS_CTL_PAYLOAD, rest, (uint32_t) strlen(rest));
				switch_mutex_unlock(s->post_mutex);
			}
			switch_mutex_unlock(ais_globals.mutex);
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

/* The apps' start (ai_stream, and ai_stream_bot with hold): channel variable
 * ai_stream_status says how it went; a failure is also logged and fired as
 * ai_stream::error. */
static int ais_app_start(switch_core_session_t *session, const char *data, int hold, ais_stream **held)
{
	switch_channel_t *channel = switch_core_session_get_channel(session);
	char *line = switch_core_session_strdup(session, data ? data : "");
	char err[2048] = "";
	int rc, waiting = 0;

	switch_mutex_lock(ais_globals.ctl_mutex);
	if (!hold && !strcasecmp(line, "stop")) {
		rc = ais_stop(session, SS_END_STOP, err, sizeof(err));
	} else {
		ais_args a;
		rc = ais_parse(channel, line, &a, err, sizeof(err));
		if (rc) {
			char tmp[512];
			switch_snprintf(tmp, sizeof(tmp), "bad arguments: %s", err);
			switch_copy_string(err, tmp, sizeof(err));
		} else {
			rc = ais_start(session, &a, hold, held, &waiting, err, sizeof(err));
		}
	}
	switch_mutex_unlock(ais_globals.ctl_mutex);

	if (rc) {
		switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_ERROR, "ai_stream: %s\n", err);
		switch_channel_set_variable_printf(channel, "ai_stream_status", "-ERR %s", err);
		ais_fire_error(session, NULL, err);
	} else {
		switch_channel_set_variable(channel, "ai_stream_status", waiting ? "+OK (waiting for the daemon)" : "+OK");
	}
	return rc;
}

SWITCH_STANDARD_APP(ais_app)
{
	ais_app_start(session, data, 0, NULL);
}

/* Why ai_stream_bot stops holding the call; NULL: it goes on. */
static const char *ais_bot_done(switch_channel_t *channel, switch_channel_state_t state, ais_stream *s)
{
	/* Hangup first by state alone: switch_channel_ready() is also false while
	 * a transfer is under way (CF_TRANSFER, a state change pending). */
	if (switch_channel_down_nosig(channel)) {
		return "hangup";
	}
	/* switch_ivr_session_transfer sets CF_TRANSFER and the next state. */
	if (switch_channel_test_flag(channel, CF_TRANSFER) || switch_channel_get_state(channel) != state) {
		return "transfer";
	}
	if (!switch_channel_ready(channel)) {
		return "hangup";
	}
	if (!atomic_load_explicit(&s->active, memory_order_relaxed)) {
		return "stream stopped";
	}
	if (ss_stream_link(&s->ss) == SS_LINK_FAILED) {
		return "stream failed";
	}
	return NULL;
}

/* Media read or write failed: a transfer under way fails them too. */
static const char *ais_bot_gone(switch_channel_t *channel, switch_channel_state_t state, ais_stream *s)
{
	const char *why = ais_bot_done(channel, state, s);
	return why ? why : "hangup";
}

/* ai_stream_bot: start the stream, then hold the call until it ends. Each
 * frame read drives the read hook (or read bug); for each packet time read,
 * one frame of silence is written, which the write-replace bug fills with TTS
 * when some is queued. So TTS has one path whatever app runs (pause, marks
 * and tracks=outbound as with ai_stream), and silence goes out when there is
 * none, which keeps the far end's jitter buffer fed. */
SWITCH_STANDARD_APP(ais_bot_app)
{
	switch_channel_t *channel = switch_core_session_get_channel(session);
	switch_channel_state_t state = switch_channel_get_state(channel);   /* CS_EXECUTE in a dialplan */
	switch_codec_implementation_t wimpl = { 0 }, rimpl = { 0 };
	switch_codec_t codec = { 0 };
	switch_frame_t out = { 0 };
	uint8_t silence[SWITCH_RECOMMENDED_BUFFER_SIZE];
	ais_stream *s = NULL;
	const char *why = NULL;
	uint32_t wsamples, owed = 0;
	int ended;

	if (ais_app_start(session, data, 1, &s)) {
		return;
	}
	switch_core_session_get_read_impl(session, &rimpl);
	switch_core_session_get_write_impl(session, &wimpl);
	wsamples = wimpl.samples_per_packet;
	if (!wsamples || wsamples * 2 > sizeof(silence) ||
		switch_core_codec_init(&codec, "L16", NULL, NULL, wimpl.actual_samples_per_second, wimpl.microseconds_per_packet / 1000, 1,
							   SWITCH_CODEC_FLAG_ENCODE | SWITCH_CODEC_FLAG_DECODE, NULL,
							   switch_core_session_get_pool(session)) != SWITCH_STATUS_SUCCESS) {
		why = "no L16 codec for the channel's write side";
		switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_ERROR, "ai_stream_bot: %s\n", why);
		ais_fire_error(session, NULL, why);
	}
	out.codec = &codec;
	out.data = silence;
	out.buflen = sizeof(silence);
	out.datalen = wsamples * 2;
	out.samples = wsamples;
	out.rate = wimpl.actual_samples_per_second;
	out.channels = 1;

	while (!why && !(why = ais_bot_done(channel, state, s))) {
		switch_frame_t *in = NULL;

		if (!SWITCH_READ_ACCEPTABLE(switch_core_session_read_frame(session, &in, SWITCH_IO_FLAG_NONE, 0))) {
			why = ais_bot_gone(channel, state, s);
			break;
		}
		/* As much written as read: the read side is the clock. */
		owed += in && in->samples ? in->samples : rimpl.samples_per_packet;
		while (owed >= wsamples && !why) {
			owed -= wsamples;
			/* The core decodes it into its own buffer for the bug; zeroed
			 * all the same, as nothing promises that. */
			memset(silence, 0, wsamples * 2);
			if (switch_core_session_write_frame(session, &out, SWITCH_IO_FLAG_NONE, 0) != SWITCH_STATUS_SUCCESS) {
				why = ais_bot_gone(channel, state, s);
			}
		}
	}
	if (switch_core_codec_ready(&codec)) {
		switch_core_codec_destroy(&codec);
	}

	switch_mutex_lock(ais_globals.mutex);
	ended = s->ended;
	switch_mutex_unlock(ais_globals.mutex);
	ais_release(s);                        /* s may be gone from here on */
	switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_INFO, "ai_stream_bot: done (%s)\n", why);
	switch_channel_set_variable(channel, "ai_stream_bot_end", why);
	/* A hangup ends the stream with the channel (StreamEnd hangup); anything
	 * else ends the bot, and the bot's stream with it. */
	if (!ended && strcmp(why, "hangup")) {
		char err[256];
		switch_mutex_lock(ais_globals.ctl_mutex);
		ais_stop(session, SS_END_STOP, err, sizeof(err));   /* "no stream running" if stopped meanwhile */
		switch_mutex_unlock(ais_globals.ctl_mutex);
	}
}

void ais_api_register(switch_loadable_module_interface_t **module_interface)
{
	switch_api_interface_t *api_interface;
	switch_application_interface_t *app_interface;

	SWITCH_ADD_API(api_interface, "uuid_ai_stream", "Stream call audio to the SmartStream daemon", ais_api, AIS_SYNTAX);
	SWITCH_ADD_APP(app_interface, "ai_stream", "Stream call audio to an AI server", "Stream call audio to an AI server through SmartStream",
				   ais_app, AIS_APP_SYNTAX, SAF_NONE);
	SWITCH_ADD_APP(app_interface, "ai_stream_bot", "Stream call audio to an AI server and play its TTS until the stream ends",
				   "Start an ai_stream stream, then hold the call: read its audio and write the AI server's TTS, or silence, "
				   "until the stream ends, the call hangs up or is transferred", ais_bot_app, AIS_BOT_SYNTAX, SAF_NONE);
	switch_console_set_complete("add uuid_ai_stream ::console::list_uuid start");
	switch_console_set_complete("add uuid_ai_stream ::console::list_uuid stop");
	switch_console_set_complete("add uuid_ai_stream ::console::list_uuid send_payload");
	switch_console_set_complete("add uuid_ai_stream ::console::list_uuid status");
}

void ais_api_unregister(void)
{
	switch_console_set_complete("del uuid_ai_stream");
}
