/* Names of enum gw_err codes, for logs and test failure messages; the class of a failed read's errno. */
#include "base/err.h"

#include <errno.h>
#include <stddef.h>

static const char *const names[] = {
    [0] = "ok",
    [-GW_ERR_NOMEM] = "out of memory",
    [-GW_ERR_INVAL] = "invalid input",
    [-GW_ERR_NOT_FOUND] = "not found",
    [-GW_ERR_EXISTS] = "already exists",
    [-GW_ERR_LIMIT] = "limit reached",
    [-GW_ERR_BUSY] = "busy",
    [-GW_ERR_TIMEOUT] = "timeout",
    [-GW_ERR_IO] = "I/O error",
    [-GW_ERR_CRYPTO] = "crypto error",
    [-GW_ERR_POLICY] = "refused by policy",
    [-GW_ERR_REPLAY] = "replayed message",
    [-GW_ERR_UPSTREAM] = "upstream error",
    [-GW_ERR_FORBIDDEN] = "forbidden",
    [-GW_ERR_UNAVAILABLE] = "unavailable",
    [-GW_ERR_REFUSED] = "refused by the upstream",
    [-GW_ERR_NOT_DURABLE] = "done, but may not outlive a crash",
    [-GW_ERR_TIME] = "time outside the window",
};

/* gw_err_str returns a static name; an unknown code (or a positive one) gives "unknown error". */
const char *gw_err_str(int err)
{
    if (err > 0 || (size_t) - (long)err >= sizeof(names) / sizeof(names[0]) || names[-err] == NULL)
        return "unknown error";
    return names[-err];
}

/* Where the path says why (gw_err_errno_class's GW_ERR_INVAL). */
static const int path_errnos[] = {ENOENT, EACCES, EPERM, ENOTDIR,   ELOOP, ENAMETOOLONG, EISDIR,
                                  ENXIO,  ENODEV, EFBIG, EOVERFLOW, EROFS, EINVAL};

int gw_err_errno_class(int e)
{
    for (size_t i = 0; i < sizeof(path_errnos) / sizeof(path_errnos[0]); i++)
        if (e == path_errnos[i])
            return GW_ERR_INVAL;
    /* when unsure, not the file's: a retry of a refused configuration costs restarts, 78 of a mere
       absence leaves the service down */
    return e == ENOMEM ? GW_ERR_NOMEM : GW_ERR_UNAVAILABLE;
}

int gw_err_file_class(int rc)
{
    return rc == GW_ERR_NOMEM || rc == GW_ERR_UNAVAILABLE ? rc : GW_ERR_INVAL;
}

int gw_err_errno_io(int e)
{
    int class = gw_err_errno_class(e);

    return class == GW_ERR_INVAL ? GW_ERR_IO : class;
}
