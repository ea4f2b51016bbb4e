/*
 * ss_action.h: the module's own check of what the daemon asks FreeSWITCH to
 * do on the AI server's behalf (defence in depth: the daemon checks first,
 * smartstream/actions.py, but the module trusts neither it nor its text).
 *
 * A transfer is "destination [dialplan [context]]", single spaces between:
 *   destination  1..64 of A-Z a-z 0-9 + * # _ . @ -   (an extension, never an app)
 *   dialplan     1..64 of A-Z a-z 0-9 _ . -, default XML; "inline" never
 *   context      1..64 of the same, default the channel's own
 * and the pair must be allowed: allow is a list of "dialplan:context"
 * entries separated by commas or spaces, where an empty context ("XML:")
 * means the channel's own context. NULL or empty allow: "XML:" only.
 */
#ifndef SS_ACTION_H
#define SS_ACTION_H

#include <stddef.h>

#define SS_ACTION_WORD_MAX 64

typedef struct ss_transfer {
    char destination[SS_ACTION_WORD_MAX + 1];
    char dialplan[SS_ACTION_WORD_MAX + 1];
    char context[SS_ACTION_WORD_MAX + 1];    /* filled in: own_context when not given */
} ss_transfer;

/* NULL when text is a transfer allow permits (out filled), else why not (a
 * constant string). own_context: the channel's context, for the defaults. */
const char *ss_action_transfer(const char *text, const char *allow, const char *own_context,
                               ss_transfer *out);

/* NULL when name can be a cause name (1..64 of A-Z 0-9 _, no digits only:
 * FreeSWITCH reads those as numbers), else why not. Whether FreeSWITCH
 * defines it is for switch_channel_str2cause to say. */
const char *ss_action_cause(const char *name);

#endif /* SS_ACTION_H */
