/*
 * files.c: the files meridianctl writes for a cluster's identity: secret
 * keys and signed topologies.
 *
 * Secrets are created, never overwritten (O_EXCL): a key that already
 * exists may be the only copy of a node's identity or of the admin's
 * authority, and a CLI that silently replaced it would lock an operator out
 * of their own cluster. They are created mode 0600 and synced before the
 * command reports success. A topology is replaced atomically (temp file,
 * fsync, rename, fsync of the directory), so a crash leaves the old
 * version or the new one, never half of either. Key files are hex so an
 * operator can move one through a terminal or a secrets manager.
 */
#include "ctl.h"
#include "keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* Key file bytes: 128 hex digits and a newline. */
#define CTL_KEY_FILE_SIZE (CTL_SECRET_KEY_SIZE * 2 + 1)
/* Room for "<path>.tmp.<pid>". */
#define CTL_PATH_SIZE_MAX 4096u

_Static_assert(CTL_SECRET_KEY_SIZE == crypto_sign_SECRETKEYBYTES, "sk size");
_Static_assert(CTL_PUBLIC_KEY_SIZE == crypto_sign_PUBLICKEYBYTES, "pk size");

int
ctl_fail_why(int err, const char *why, const char *what_fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fputs("meridianctl: ", stderr);
    va_start(ap, what_fmt);
    vfprintf(stderr, what_fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s (%s)\n", why, mrd_errname(err));
    return CTL_EXIT_FAIL;
}

/* Writes all of data to fd, then fsyncs it. */
static int
ctl_fd_write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t) n;
    }
    return fsync(fd);
}

/* Creates path with mode, never over an existing file or symlink. */
static int
ctl_file_create_mode(
    const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(
        path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        if (errno == EEXIST) {
            fprintf(stderr,
                "meridianctl: %s exists; it is never overwritten (move it "
                "away first)\n",
                path);
            return CTL_EXIT_FAIL;
        }
        return ctl_fail_sys("create %s", path);
    }
    /* umask may have cleared bits, never added any; fchmod makes a key's
     * mode exactly 0600 whatever the umask. */
    if (fchmod(fd, mode) != 0 || ctl_fd_write_all(fd, data, len) != 0) {
        int rv = ctl_fail_sys("write %s", path);
        close(fd);
        unlink(path);
        return rv;
    }
    if (close(fd) != 0) {
        int rv = ctl_fail_sys("write %s", path);
        unlink(path);
        return rv;
    }
    return CTL_EXIT_OK;
}

int
ctl_file_create(const char *path, const void *data, size_t len)
{
    return ctl_file_create_mode(path, data, len, 0644);
}

int
ctl_key_write(const char *path, const uint8_t sk[CTL_SECRET_KEY_SIZE])
{
    char hex[CTL_SECRET_KEY_SIZE * 2 + 1];

    sodium_bin2hex(hex, sizeof(hex), sk, CTL_SECRET_KEY_SIZE);
    hex[CTL_SECRET_KEY_SIZE * 2] = '\n'; /* replaces the NUL */
    int rv = ctl_file_create_mode(path, hex, CTL_KEY_FILE_SIZE, 0600);
    sodium_memzero(hex, sizeof(hex));
    return rv;
}

int
ctl_key_read(const char *path, uint8_t sk[CTL_SECRET_KEY_SIZE])
{
    char err[600];

    /* One reader of key files for the node, the library and this tool
     * (net/keyring.h): a file others may read, or whose halves do not
     * match, is refused. */
    int rv = keyring_key_read(path, sk, err, sizeof(err));
    if (rv != MRD_OK) {
        fprintf(stderr, "meridianctl: %s\n", err);
        return CTL_EXIT_FAIL;
    }
    return CTL_EXIT_OK;
}

int
ctl_file_read(
    const char *path, size_t size_max, uint8_t **data_out, size_t *len_out)
{
    *data_out = NULL;
    *len_out  = 0;
    FILE *f   = fopen(path, "rb");
    if (f == NULL) {
        return ctl_fail_sys("open %s", path);
    }
    /* One byte more than allowed tells "too big" from "exactly the max". */
    uint8_t *data = malloc(size_max + 1);
    if (data == NULL) {
        fclose(f);
        return ctl_fail_mrd(MRD_ENOMEM, "read %s", path);
    }
    size_t len = fread(data, 1, size_max + 1, f);
    bool   bad = ferror(f) != 0;
    fclose(f);
    if (bad) {
        free(data);
        return ctl_fail_sys("read %s", path);
    }
    if (len > size_max) {
        free(data);
        fprintf(stderr, "meridianctl: %s is larger than %zu bytes\n", path,
            size_max);
        return CTL_EXIT_FAIL;
    }
    *data_out = data;
    *len_out  = len;
    return CTL_EXIT_OK;
}

/* fsyncs the directory holding path, so a rename in it is durable. */
static int
ctl_dir_sync(const char *path)
{
    char        dir[CTL_PATH_SIZE_MAX];
    const char *slash = strrchr(path, '/');

    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == path) {
        snprintf(dir, sizeof(dir), "/");
    } else {
        snprintf(dir, sizeof(dir), "%.*s", (int) (slash - path), path);
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int
ctl_file_replace(const char *path, const void *data, size_t len)
{
    char tmp[CTL_PATH_SIZE_MAX];

    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long) getpid());
    if (n < 0 || (size_t) n >= sizeof(tmp)) {
        fprintf(stderr, "meridianctl: path too long: %s\n", path);
        return CTL_EXIT_FAIL;
    }
    int rv = ctl_file_create_mode(tmp, data, len, 0644);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    if (rename(tmp, path) != 0) {
        rv = ctl_fail_sys("rename %s to %s", tmp, path);
        unlink(tmp);
        return rv;
    }
    if (ctl_dir_sync(path) != 0) {
        return ctl_fail_sys("sync the directory of %s", path);
    }
    return CTL_EXIT_OK;
}
