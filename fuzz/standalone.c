/*
 * A main() for the harnesses without libFuzzer: runs each file named on the command line, and
 * each file in each directory named, once. It replays the corpus in the ordinary test build
 * (gcc, sanitizers, valgrind), reproduces a crash anywhere, and drives the coverage build.
 *
 * Usage: HARNESS [FILE | DIRECTORY]...   (exit 0 when every input ran; a finding aborts)
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Runs one input file; returns 0, or -1 if it cannot be read. */
static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *data = NULL;
    long size = -1;
    int rc = -1;

    if (f == NULL) {
        perror(path);
        return -1;
    }
    if (fseek(f, 0, SEEK_END) == 0) {
        size = ftell(f);
    }
    if (size >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        /* Exactly the file's size, so a harness reading past its input is caught. */
        data = malloc(size > 0 ? (size_t)size : 1);
    }
    if (data != NULL && fread(data, 1, (size_t)size, f) == (size_t)size) {
        LLVMFuzzerTestOneInput(data, (size_t)size);
        rc = 0;
    } else {
        fprintf(stderr, "%s: cannot read\n", path);
    }
    free(data);
    fclose(f);
    return rc;
}

/* Runs every regular file of @p dir in name order; returns how many failed to run. */
static int run_dir(const char *dir, int *count)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    int failed = 0;

    if (n < 0) {
        perror(dir);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        if (names[i]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            failed += run_file(path) != 0;
            (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return failed;
}

int main(int argc, char **argv)
{
    int failed = 0;
    int count = 0;

    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            failed += run_dir(argv[i], &count);
        } else {
            failed += run_file(argv[i]) != 0;
            count++;
        }
    }
    printf("%s: %d inputs run, %d unreadable\n", argv[0], count, failed);
    return failed == 0 ? 0 : 1;
}
