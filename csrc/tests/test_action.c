/* ss_action: the module's check of transfers and hangup causes. */
#include "check.h"
#include "ss_action.h"

static const char *xfer(const char *text, const char *allow, ss_transfer *t)
{
    return ss_action_transfer(text, allow, "public", t);
}

static void transfer_defaults_to_the_channels_context_in_xml(void)
{
    ss_transfer t;
    CHECK(xfer("1000", NULL, &t) == NULL);
    CHECK_STR(t.destination, "1000");
    CHECK_STR(t.dialplan, "XML");
    CHECK_STR(t.context, "public");
    CHECK(xfer("sales@x.example XML public", "", &t) == NULL);
    CHECK(xfer("1000 XML default", NULL, &t) != NULL);   /* another context: not by default */
}

static void transfer_only_to_allowed_pairs(void)
{
    ss_transfer t;
    const char *allow = "XML:default, XML:sales";
    CHECK(xfer("+1555*#_.@-x XML default", allow, &t) == NULL);
    CHECK(xfer("1000 XML default", allow, &t) == NULL);
    CHECK_STR(t.context, "default");
    CHECK(xfer("1000 XML sales", allow, &t) == NULL);
    CHECK(xfer("1000 XML defaul", allow, &t) != NULL);    /* prefixes do not count */
    CHECK(xfer("1000 XML defaults", allow, &t) != NULL);
    CHECK(xfer("1000 enum default", allow, &t) != NULL);
    CHECK(xfer("1000", allow, &t) != NULL);               /* own context not listed */
    CHECK(xfer("1000", "XML:,XML:default", &t) == NULL);
}

static void inline_and_applications_are_refused(void)
{
    ss_transfer t;
    const char *all = "inline:,inline:default,XML:default";
    CHECK(xfer("system:touch\tpwned inline", all, &t) != NULL);
    CHECK(xfer("bridge:sofia/gw/1 inline", all, &t) != NULL);
    CHECK(xfer("1000 inline", all, &t) != NULL);
    CHECK(xfer("1000 INLINE default", all, &t) != NULL);
    CHECK(xfer("1000\tXML default", all, &t) != NULL);
    CHECK(xfer("1000\nXML default", all, &t) != NULL);
    CHECK(xfer("1000 XML default\n", all, &t) != NULL);
    CHECK(xfer("1000  XML default", all, &t) != NULL);     /* an empty word */
    CHECK(xfer("1000 XML default extra", all, &t) != NULL);
    CHECK(xfer("", all, &t) != NULL);
    CHECK(xfer("10\x01" "00", all, &t) != NULL);
    CHECK(xfer("100'0", all, &t) != NULL);
    CHECK(xfer("1000 X:ML default", all, &t) != NULL);
    CHECK(ss_action_transfer(NULL, all, "public", &t) != NULL);
}

static void transfer_words_are_bounded(void)
{
    ss_transfer t;
    char text[300];
    memset(text, '1', 64);
    strcpy(text + 64, " XML default");
    CHECK(xfer(text, "XML:default", &t) == NULL);
    memset(text, '1', 65);
    strcpy(text + 65, " XML default");
    CHECK(xfer(text, "XML:default", &t) != NULL);
    memset(text, 'a', 200);
    text[200] = '\0';
    CHECK(ss_action_transfer("1000", "XML:", text, &t) != NULL);   /* an own context too long */
}

static void hangup_causes_are_names(void)
{
    CHECK(ss_action_cause("NORMAL_CLEARING") == NULL);
    CHECK(ss_action_cause("USER_BUSY") == NULL);
    CHECK(ss_action_cause("") != NULL);
    CHECK(ss_action_cause("16") != NULL);
    CHECK(ss_action_cause("normal_clearing") != NULL);
    CHECK(ss_action_cause("NORMAL CLEARING") != NULL);
    CHECK(ss_action_cause("NORMAL_CLEARING\n") != NULL);
    CHECK(ss_action_cause(NULL) != NULL);
    char long_name[80];
    memset(long_name, 'A', 79);
    long_name[79] = '\0';
    CHECK(ss_action_cause(long_name) != NULL);
}

const check_case action_cases[] = {
    CASE(transfer_defaults_to_the_channels_context_in_xml),
    CASE(transfer_only_to_allowed_pairs),
    CASE(inline_and_applications_are_refused),
    CASE(transfer_words_are_bounded),
    CASE(hangup_causes_are_names),
    {NULL, NULL},
};
