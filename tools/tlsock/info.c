/*
 * The readable session summary printed by `connect` and `demo`: the same fields in the same
 * order, so users learn one layout.
 */
#include "cli.h"

static const char *or_none(const char *s)
{
    const char *shown = "(none)";

    if (s != NULL && s[0] != '\0') {
        shown = s;
    }
    return shown;
}

void cli_print_info(FILE *out, const struct tlsock_info *info, const char *indent)
{
    fprintf(out, "%sversion      %s\n", indent, or_none(info->version));
    fprintf(out, "%scipher       %s\n", indent, or_none(info->cipher));
    fprintf(out, "%sALPN         %s\n", indent, or_none(info->alpn));
    fprintf(out, "%sservername   %s\n", indent, or_none(info->servername));
    fprintf(out, "%speer subject %s\n", indent, or_none(info->peer_subject));
    fprintf(out, "%speer SANs    %s\n", indent, or_none(info->peer_sans));
    fprintf(out, "%sfingerprint  %s\n", indent, or_none(info->peer_fingerprint));
    if (info->verify_result == 0) {
        fprintf(out, "%sverify       %s\n", indent, or_none(info->verify_message));
    } else {
        fprintf(out, "%sverify       failed (%d): %s\n", indent, info->verify_result,
                or_none(info->verify_message));
    }
    fprintf(out, "%sresumed      %s\n", indent, info->resumed ? "yes" : "no");
    fprintf(out, "%simpl         %s\n", indent, or_none(info->impl));
}
