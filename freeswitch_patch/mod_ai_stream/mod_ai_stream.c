/*
 * mod_ai_stream.c: the module's load and unload, its configuration
 * (ai_stream.conf) and the globals every file shares. What the files do and
 * how audio flows: mod_ai_stream.h.
 */
#include "mod_ai_stream.h"
#include <dlfcn.h>
#include <pwd.h>

SWITCH_MODULE_LOAD_FUNCTION(mod_ai_stream_load);
SWITCH_MODULE_SHUTDOWN_FUNCTION(mod_ai_stream_shutdown);
SWITCH_MODULE_DEFINITION(mod_ai_stream, mod_ai_stream_load, mod_ai_stream_shutdown, NULL);

ais_globals_t ais_globals;

static void ais_load_config(void)
{
	switch_xml_t cfg, xml, settings, param;

	switch_copy_string(ais_globals.pool_path, AIS_DEFAULT_POOL, sizeof(ais_globals.pool_path));
	ais_globals.pool_owner = SS_OWNER_OF_DIR;
	ais_globals.start_without_daemon = 1;
	if (!(xml = switch_xml_open_cfg("ai_stream.conf", &cfg, NULL))) {
		return;              /* no config file: defaults */
	}
	if ((settings = switch_xml_child(cfg, "settings"))) {
		for (param = switch_xml_child(settings, "param"); param; param = param->next) {
			const char *name = switch_xml_attr_soft(param, "name");
			const char *value = switch_xml_attr_soft(param, "value");
			if (!strcasecmp(name, "pool-path") && !zstr(value)) {
				switch_copy_string(ais_globals.pool_path, value, sizeof(ais_globals.pool_path));
			} else if (!strcasecmp(name, "start-without-daemon")) {
				/* A start while the daemon is stopped or lost waits for it (its audio kept in the ring). */
				ais_globals.start_without_daemon = switch_true(value);
			} else if (!strcasecmp(name, "transfer-allow")) {
				switch_copy_string(ais_globals.transfer_allow, value, sizeof(ais_globals.transfer_allow));
			} else if (!strcasecmp(name, "pool-owner") && !zstr(value)) {
				/* The daemon's user (name or uid): a pool owned by anyone else is refused. */
				struct passwd *pw = getpwnam(value);
				char *end = NULL;
				unsigned long uid = strtoul(value, &end, 10);
				if (pw) {
					ais_globals.pool_owner = pw->pw_uid;
				} else if (end && !*end && uid < (unsigned long) SS_OWNER_OF_DIR) {
					ais_globals.pool_owner = (uid_t) uid;
				} else {
					switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR,
									  "ai_stream: pool-owner %s: no such user; trusting the owner of the pool's directory\n", value);
				}
			}
		}
	}
	switch_xml_free(xml);
}

SWITCH_MODULE_LOAD_FUNCTION(mod_ai_stream_load)
{
	switch_threadattr_t *attr = NULL;

	memset(&ais_globals, 0, sizeof(ais_globals));
	ais_globals.pool = pool;
	switch_mutex_init(&ais_globals.mutex, SWITCH_MUTEX_NESTED, pool);
	switch_mutex_init(&ais_globals.ctl_mutex, SWITCH_MUTEX_NESTED, pool);
	ais_load_config();

	if (ais_events_reserve() != SWITCH_STATUS_SUCCESS) {
		return SWITCH_STATUS_TERM;
	}

	/* Is the core patched? One binary serves both. */
	*(void **) (&ais_globals.set_read_hook) = dlsym(RTLD_DEFAULT, "switch_core_session_set_read_hook");
	if (ais_globals.set_read_hook) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_INFO, "ai_stream: core read hook found: inbound audio via the read hook\n");
	} else {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_WARNING,
						  "ai_stream: this FreeSWITCH has no switch_core_session_set_read_hook (0001-core-read-frame-hook.patch "
						  "not applied): inbound audio falls back to a read media bug\n");
	}

	*module_interface = switch_loadable_module_create_module_interface(pool, modname);
	ais_api_register(module_interface);

	ais_globals.running = 1;
	switch_threadattr_create(&attr, pool);
	switch_threadattr_stacksize_set(attr, SWITCH_THREAD_STACKSIZE);
	if (switch_thread_create(&ais_globals.thread, attr, ais_poll_thread, NULL, pool) != SWITCH_STATUS_SUCCESS) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "ai_stream: cannot start the control thread\n");
		return SWITCH_STATUS_TERM;
	}
	switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_INFO, "ai_stream: loaded, pool %s%s\n", ais_globals.pool_path,
					  ais_globals.start_without_daemon ? "" : ", starts refused while the daemon is down");
	return SWITCH_STATUS_SUCCESS;
}

SWITCH_MODULE_SHUTDOWN_FUNCTION(mod_ai_stream_shutdown)
{
	switch_status_t st;

	ais_globals.running = 0;
	if (ais_globals.thread) {
		switch_thread_join(&st, ais_globals.thread);
		ais_globals.thread = NULL;
	}
	ais_stop_all();
	ais_events_free();
	ais_api_unregister();
	return SWITCH_STATUS_SUCCESS;
}
