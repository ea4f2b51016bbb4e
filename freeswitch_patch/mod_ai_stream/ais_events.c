/*
 * ais_events.c: the module's ai_stream::* events (README.md §5): subclass
 * reservation, and an event carrying the channel's data.
 */
#include "mod_ai_stream.h"

static const char *ais_subclasses[] = { AIS_EV_START, AIS_EV_STOP, AIS_EV_ERROR, AIS_EV_MARK, AIS_EV_EVENT };

switch_status_t ais_events_reserve(void)
{
	size_t i;

	for (i = 0; i < sizeof(ais_subclasses) / sizeof(ais_subclasses[0]); i++) {
		if (switch_event_reserve_subclass(ais_subclasses[i]) != SWITCH_STATUS_SUCCESS) {
			switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "ai_stream: cannot reserve event subclass %s\n", ais_subclasses[i]);
			return SWITCH_STATUS_TERM;
		}
	}
	return SWITCH_STATUS_SUCCESS;
}

void ais_events_free(void)
{
	size_t i;

	for (i = 0; i < sizeof(ais_subclasses) / sizeof(ais_subclasses[0]); i++) {
		switch_event_free_subclass(ais_subclasses[i]);
	}
}

/* Event with the channel's data when the session is given or can be found. */
switch_event_t *ais_event(switch_core_session_t *session, const char *uuid, const char *subclass)
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

void ais_fire_error(switch_core_session_t *session, const char *uuid, const char *reason)
{
	switch_event_t *event = ais_event(session, uuid, AIS_EV_ERROR);
	if (event) {
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "AI-Stream-Error", reason);
		switch_event_fire(&event);
	}
}
