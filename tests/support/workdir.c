/*
 * A temporary directory of files for tests (workdir.h).
 */
#include "workdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>

#include <cmocka.h>

/* Names that go into a path or a command unquoted: letters, digits, '-', '_' and '.'. */
static int plain_name(const char *s)
{
    if (s == NULL || s[0] == '\0') {
        return 0;
    }
    return s[strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")] ==
           '\0';
}

int ts_workdir_make(struct ts_workdir *wd, const char *prefix)
{
    int n;

    wd->path[0] = '\0';
    if (!plain_name(prefix)) {
        print_error("ts_workdir_make: a bad prefix\n");
        return -1;
    }
    n = snprintf(wd->path, sizeof(wd->path), TS_WORKDIR_ROOT "%s-XXXXXX", prefix);
    if (n < 0 || (size_t)n >= sizeof(wd->path)) {
        print_error("ts_workdir_make: the prefix %s is too long\n", prefix);
        wd->path[0] = '\0';
        return -1;
    }
    if (mkdtemp(wd->path) == NULL) {
        print_error("mkdtemp %s: %s\n", wd->path, strerror(errno));
        wd->path[0] = '\0';
        return -1;
    }
    return 0;
}

const char *ts_workdir_path(const struct ts_workdir *wd, const char *name, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s/%s", wd->path, name);

    if (n < 0 || (size_t)n >= size) {
        print_error("the path of %s in %s does not fit in %zu bytes\n", name, wd->path, size);
        buf[0] = '\0';
    }
    return buf;
}

int ts_workdir_write(const struct ts_workdir *wd, const char *name, const void *data, size_t len)
{
    const char *path = TS_WORKDIR_PATH(wd, name);
    FILE *f = fopen(path, "wb");
    int rc = -1;

    if (f != NULL) {
        rc = fwrite(data, 1, len, f) == len ? 0 : -1;
        rc = fclose(f) == 0 ? rc : -1;
    }
    if (rc != 0) {
        print_error("cannot write %s: %s\n", path, strerror(errno));
    }
    return rc;
}

int ts_workdir_read(const struct ts_workdir *wd, const char *name, unsigned char **data,
                    size_t *len)
{
    const char *path = TS_WORKDIR_PATH(wd, name);
    FILE *f = fopen(path, "rb");
    long size = -1;

    *data = NULL;
    *len = 0;
    if (f == NULL) {
        print_error("cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) == 0) {
        size = ftell(f);
    }
    if (size >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        *data = malloc((size_t)size + 1);
    }
    if (*data == NULL || fread(*data, 1, (size_t)size, f) != (size_t)size) {
        print_error("cannot read %s\n", path);
        free(*data);
        *data = NULL;
        fclose(f);
        return -1;
    }
    fclose(f);
    (*data)[size] = '\0';
    *len = (size_t)size;
    return 0;
}

int ts_workdir_sh(const struct ts_workdir *wd, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    int n = snprintf(cmd, sizeof(cmd), "cd '%s' && ", wd->path);
    int status;

    va_start(ap, fmt);
    int m = vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t)m >= sizeof(cmd) - (size_t)n) {
        print_error("command too long: %s...\n", cmd);
        return -1;
    }
    status = system(cmd);
    if (status != 0) {
        print_error("command failed (status %d): %s\n", status, cmd);
        return -1;
    }
    return 0;
}

int ts_workdir_remove(struct ts_workdir *wd)
{
    DIR *d;
    struct dirent *e;
    int rc = 0;

    if (wd->path[0] == '\0') {
        return 0;
    }
    if (strncmp(wd->path, TS_WORKDIR_ROOT, strlen(TS_WORKDIR_ROOT)) != 0 ||
        strstr(wd->path, "/..") != NULL) {
        print_error("ts_workdir_remove: %s is not a work directory, left alone\n", wd->path);
        return -1;
    }
    d = opendir(wd->path);
    if (d == NULL) {
        print_error("cannot open %s: %s\n", wd->path, strerror(errno));
        return -1;
    }
    /* Bounded by the directory's entries: nothing is created in it meanwhile. */
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        if (unlinkat(dirfd(d), e->d_name, 0) != 0) {
            print_error("cannot remove %s/%s: %s\n", wd->path, e->d_name, strerror(errno));
            rc = -1;
        }
    }
    closedir(d);
    if (rmdir(wd->path) != 0) {
        print_error("cannot remove %s: %s\n", wd->path, strerror(errno));
        rc = -1;
    }
    wd->path[0] = '\0';
    return rc;
}

int ts_require_tool(const char *tool)
{
    char cmd[128];

    if (!plain_name(tool)) {
        print_error("ts_require_tool: a bad tool name\n");
        return -1;
    }
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
    if (system(cmd) != 0) {
        print_error("the %s command-line tool is missing (scripts/bootstrap installs it): "
                    "a setup failure, not a skip\n",
                    tool);
        return -1;
    }
    return 0;
}
