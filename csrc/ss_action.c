/* ss_action.c: see ss_action.h. */
#include "ss_action.h"

#include <string.h>
#include <strings.h>

static int dest_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("+*#_.@-", c) != NULL);
}

static int word_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

/* Copies the word at *p (up to a space or the end) into out; returns its
 * length, or -1 if it is empty, too long or has a character ok() refuses. */
static int take_word(const char **p, char *out, int (*ok)(char))
{
    size_t n = 0;
    while ((*p)[n] && (*p)[n] != ' ') {
        if (n == SS_ACTION_WORD_MAX || !ok((*p)[n]))
            return -1;
        out[n] = (*p)[n];
        n++;
    }
    out[n] = '\0';
    *p += n;
    return n ? (int)n : -1;
}

/* Is dialplan:context in allow? An entry with an empty context stands for own. */
static int allowed(const char *allow, const char *dialplan, const char *context,
                   const char *own)
{
    if (!allow || !*allow)
        allow = "XML:";
    while (*allow) {
        size_t n = strcspn(allow, ", ");
        const char *colon = memchr(allow, ':', n);
        if (colon) {
            size_t dl = (size_t)(colon - allow), cl = n - dl - 1;
            const char *want = cl ? colon + 1 : own;
            size_t wl = cl ? cl : strlen(own);
            if (dl == strlen(dialplan) && !strncmp(allow, dialplan, dl) &&
                wl == strlen(context) && !strncmp(want, context, wl))
                return 1;
        }
        allow += n;
        allow += strspn(allow, ", ");
    }
    return 0;
}

const char *ss_action_transfer(const char *text, const char *allow, const char *own_context,
                               ss_transfer *out)
{
    const char *p = text;
    if (!text || !out)
        return "no transfer";
    if (!own_context)
        own_context = "";
    memset(out, 0, sizeof *out);
    if (take_word(&p, out->destination, dest_char) < 0)
        return "destination: 1 to 64 of A-Z a-z 0-9 + * # _ . @ -";
    strcpy(out->dialplan, "XML");
    if (*p == ' ') {
        p++;
        if (take_word(&p, out->dialplan, word_char) < 0)
            return "dialplan: 1 to 64 of A-Z a-z 0-9 _ . -";
    }
    if (*p == ' ') {
        p++;
        if (take_word(&p, out->context, word_char) < 0)
            return "context: 1 to 64 of A-Z a-z 0-9 _ . -";
    }
    if (*p)
        return "more than destination, dialplan and context";
    if (!strcasecmp(out->dialplan, "inline"))
        return "dialplan inline is never allowed";
    if (!out->context[0]) {
        if (strlen(own_context) > SS_ACTION_WORD_MAX)
            return "the channel's context is too long";
        strcpy(out->context, own_context);
    }
    if (!allowed(allow, out->dialplan, out->context, own_context))
        return "dialplan and context not in transfer-allow";
    return NULL;
}

const char *ss_action_cause(const char *name)
{
    size_t n = 0;
    int letter = 0;
    if (!name)
        return "no cause";
    for (; name[n]; n++) {
        char c = name[n];
        if (n == SS_ACTION_WORD_MAX || !((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return "cause: 1 to 64 of A-Z 0-9 _";
        letter |= !(c >= '0' && c <= '9');
    }
    if (!n || !letter)
        return "cause: a name, not a number";
    return NULL;
}
