/*
 * PEM output of DER certificates (RFC 7468: base64 in lines of 64 characters between the
 * BEGIN/END lines), for `tlsock connect --show-certs`. The library hands out DER only, and the
 * tool uses only the public API, so the encoding is done here.
 */
#include "cli.h"

enum { PEM_LINE = 64 };

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void cli_print_pem_cert(FILE *out, const unsigned char *der, size_t len)
{
    char line[PEM_LINE + 2];
    size_t col = 0;

    fputs("-----BEGIN CERTIFICATE-----\n", out);
    for (size_t i = 0; i < len; i += 3) {
        size_t left = len - i;
        unsigned long n = (unsigned long)der[i] << 16;

        n |= left > 1 ? (unsigned long)der[i + 1] << 8 : 0;
        n |= left > 2 ? (unsigned long)der[i + 2] : 0;
        line[col++] = b64[(n >> 18) & 63];
        line[col++] = b64[(n >> 12) & 63];
        line[col++] = left > 1 ? b64[(n >> 6) & 63] : '=';
        line[col++] = left > 2 ? b64[n & 63] : '=';
        /* 64 is a multiple of 4: a line always ends after a whole group. */
        if (col == PEM_LINE || i + 3 >= len) {
            line[col++] = '\n';
            fwrite(line, 1, col, out);
            col = 0;
        }
    }
    fputs("-----END CERTIFICATE-----\n", out);
}
