/* replay.c -- main() for a fuzz target built without libFuzzer: runs
 * LLVMFuzzerTestOneInput once per file named on the command line (a
 * directory: each file in it, sorted), printing TAP, one `ok` per file. A
 * crash (abort, sanitizer report) ends the program, so ctest and
 * scripts/test.sh count the rest as not run. CMake builds one per target
 * (fuzz_<target>) and ctest replays tests/fuzz/corpus/<target>/ and
 * tests/fuzz/regress/<target>/ through it. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char **files;
static size_t nfiles, capfiles;

static void add(const char *path)
{
    if (nfiles == capfiles) {
        capfiles = capfiles ? capfiles * 2 : 64;
        files = realloc(files, capfiles * sizeof(*files));
        if (files == NULL)
            abort();
    }
    files[nfiles++] = strdup(path);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void collect(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return; /* a missing directory: nothing to replay */
    if (!S_ISDIR(st.st_mode)) {
        add(path);
        return;
    }
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    size_t first = nfiles;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
            add(p);
    }
    closedir(d);
    qsort(files + first, nfiles - first, sizeof(*files), by_name);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        collect(argv[i]);
    printf("1..%zu\n", nfiles);
    fflush(stdout);
    int bad = 0;
    for (size_t i = 0; i < nfiles; i++) {
        FILE *f = fopen(files[i], "rb");
        if (f == NULL) {
            printf("not ok %zu - %s (cannot open)\n", i + 1, files[i]);
            bad = 1;
            continue;
        }
        size_t cap = 4096, n = 0, r;
        uint8_t *buf = malloc(cap);
        while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
            n += r;
            if (n == cap)
                buf = realloc(buf, cap *= 2);
        }
        fclose(f);
        if (buf == NULL)
            abort();
        LLVMFuzzerTestOneInput(buf, n);
        free(buf);
        printf("ok %zu - %s\n", i + 1, files[i]);
        fflush(stdout);
        free(files[i]);
    }
    free(files);
    return bad;
}
