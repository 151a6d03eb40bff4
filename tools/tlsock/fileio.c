/*
 * Writing PEM files for `cert` and `serve --ca-out`: directories created on demand, keys
 * never left readable by others.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

bool cli_make_dirs(const char *dir)
{
    bool ok = false;
    char path[CLI_PATH_SIZE];
    size_t len = strlen(dir);
    size_t i = 0;

    if (len == 0 || len >= sizeof(path)) {
        cli_errorf("%s: bad directory name", dir);
        goto done;
    }
    memcpy(path, dir, len + 1);
    /* Start at 1 so that an absolute path's leading '/' is not taken as a component end. */
    for (i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0') {
            continue;
        }
        path[i] = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            cli_errorf("cannot create directory %s: %s", path, strerror(errno));
            goto done;
        }
        if (i < len) {
            path[i] = '/';
        }
    }
    ok = true;
done:
    return ok;
}

static bool write_all(int fd, const char *data, size_t len)
{
    bool ok = false;
    size_t off = 0;
    ssize_t n = 0;

    while (off < len) {
        n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            goto done;
        }
        off += (size_t)n;
    }
    ok = true;
done:
    return ok;
}

bool cli_write_file(const char *path, const char *content, unsigned mode)
{
    bool ok = false;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);

    if (fd < 0) {
        cli_errorf("cannot open %s: %s", path, strerror(errno));
        goto done;
    }
    /* open() keeps the mode of an existing file; a key must not stay readable by others. */
    if (fchmod(fd, (mode_t)mode) != 0) {
        cli_errorf("cannot chmod %s: %s", path, strerror(errno));
        goto close_fd;
    }
    if (!write_all(fd, content, strlen(content))) {
        cli_errorf("cannot write %s: %s", path, strerror(errno));
        goto close_fd;
    }
    ok = true;
close_fd:
    if (close(fd) != 0 && ok) {
        cli_errorf("cannot write %s: %s", path, strerror(errno));
        ok = false;
    }
done:
    return ok;
}
