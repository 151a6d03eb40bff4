/*
 * A temporary directory of files for tests that make their inputs with command-line tools (the
 * `openssl` program: CRLs, encrypted keys, PKCS#12 bundles, DER files): made under
 * /tmp/tlsock-<prefix>-XXXXXX, filled by the test, read back, removed at the end.
 *
 * Every function prints what failed (cmocka's print_error) and returns 0 or -1 instead of
 * asserting, so that cmocka group setups and teardowns can use them. Nothing here allocates but
 * ts_workdir_read() (its result).
 */
#ifndef TLSOCK_TEST_WORKDIR_H
#define TLSOCK_TEST_WORKDIR_H

#include <stddef.h>

#include "base/base.h"

/* Every work directory's path starts so; ts_workdir_remove() removes nothing else. */
#define TS_WORKDIR_ROOT "/tmp/tlsock-"

/* Room for a file's path in a work directory. */
#define TS_WORKDIR_PATH_MAX 256

/* A temporary directory. All zero (path "") means none: removing it does nothing. */
struct ts_workdir {
    char path[64];
};

/*
 * Makes a new empty directory TS_WORKDIR_ROOT "<prefix>-XXXXXX" (mkdtemp) and keeps its path in
 * @p wd. @p prefix is a short name: letters, digits, '-' and '_'.
 */
int ts_workdir_make(struct ts_workdir *wd, const char *prefix);

/*
 * Writes "<dir>/<name>" into @p buf and returns @p buf. A path that does not fit in @p size is
 * reported and @p buf left empty, so that opening it fails.
 */
const char *ts_workdir_path(const struct ts_workdir *wd, const char *name, char *buf, size_t size);

/* ts_workdir_path() into a buffer that lives until the end of the enclosing block. */
#define TS_WORKDIR_PATH(wd, name)                                                                  \
    ts_workdir_path((wd), (name), (char[TS_WORKDIR_PATH_MAX]){0}, TS_WORKDIR_PATH_MAX)

/* Creates or replaces the file @p name in the directory with the @p len bytes at @p data. */
int ts_workdir_write(const struct ts_workdir *wd, const char *name, const void *data, size_t len);

/*
 * Reads the file @p name of the directory into a malloc()ed buffer, NUL-terminated after its
 * @p len bytes; the caller frees @p data. On failure @p data is NULL.
 */
int ts_workdir_read(const struct ts_workdir *wd, const char *name, unsigned char **data,
                    size_t *len);

/*
 * Runs the shell command made from @p fmt (system()) with the directory as its working
 * directory. Fails unless the command exits 0, printing the command and its status. The command
 * bounds its own time (`timeout`) when it might not end; it is not quoted for the caller.
 */
int ts_workdir_sh(const struct ts_workdir *wd, const char *fmt, ...) TLSOCK__PRINTF(2, 3);

/*
 * Removes the files of the directory and the directory itself (no subdirectories, no shell), and
 * clears @p wd. A directory whose path does not start with TS_WORKDIR_ROOT is left alone and
 * reported. Does nothing for an empty @p wd.
 */
int ts_workdir_remove(struct ts_workdir *wd);

/*
 * Checks that the program @p tool can be run (found on PATH). The tools the tests use are
 * dependencies scripts/bootstrap installs: a missing one is reported as a setup failure, never
 * a skip.
 */
int ts_require_tool(const char *tool);

#endif
