/*
 * The replay driver of the gcc builds: a fuzz target without libFuzzer, for `make test`. Each
 * argument is an input file, or a directory whose files (dot files aside) are replayed in name
 * order; a path that does not exist holds nothing (a target without crash reproducers). An input
 * that crashes the target crashes the driver, under ASan+UBSan in build-asan. Fails when it found
 * no input at all: a misnamed corpus must not pass as an empty one.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Replays one file; 0, or -1 if it cannot be read. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    uint8_t *buf;
    size_t n;

    if (f == NULL || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        if (f != NULL)
            fclose(f);
        return -1;
    }
    /* exactly the input's size, as libFuzzer hands it over: a read past it is a read past the buffer */
    n = (size_t)st.st_size;
    if ((buf = malloc(n > 0 ? n : 1)) == NULL || fread(buf, 1, n, f) != n) {
        fprintf(stderr, "replay: %s: cannot read %zu bytes\n", path, n);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

static int visible(const struct dirent *de)
{
    return de->d_name[0] != '.';
}

/* Replays |path| (a file or a directory of files); adds the inputs replayed to *count. 0 or -1. */
static int replay_path(const char *path, size_t *count)
{
    struct dirent **list;
    struct stat st;
    char file[PATH_MAX];
    int n, rc = 0;

    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return replay_file(path);
    }
    if ((n = scandir(path, &list, visible, alphasort)) < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        snprintf(file, sizeof(file), "%s/%s", path, list[i]->d_name);
        if (stat(file, &st) == 0 && S_ISREG(st.st_mode)) {
            (*count)++;
            rc |= replay_file(file);
        }
        free(list[i]);
    }
    free(list);
    return rc;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    int rc = 0;

    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++)
        rc |= replay_path(argv[i], &count);
    printf("replay: %zu inputs\n", count);
    if (count == 0) {
        fprintf(stderr, "replay: no input found\n");
        return 1;
    }
    return rc != 0 ? 1 : 0;
}
