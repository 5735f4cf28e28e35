/* Error codes: our functions return 0 on success or a negative enum gw_err. */
#ifndef GW_ERR_H
#define GW_ERR_H

#include "base/limits.h"

enum gw_err {
    GW_ERR_NOMEM = -1,
    GW_ERR_INVAL = -2, /* malformed input */
    GW_ERR_NOT_FOUND = -3,
    GW_ERR_EXISTS = -4, /* e.g. transactionID already open */
    GW_ERR_LIMIT = -5,  /* a cap was reached */
    GW_ERR_BUSY = -6,   /* queue or upstream in-flight cap full: retry later */
    GW_ERR_TIMEOUT = -7,
    GW_ERR_IO = -8,
    GW_ERR_CRYPTO = -9,    /* an OpenSSL call failed */
    GW_ERR_POLICY = -10,   /* refused by route policy */
    GW_ERR_REPLAY = -11,   /* replayed message */
    GW_ERR_UPSTREAM = -12, /* upstream answered with an error */
    GW_ERR_FORBIDDEN = -13,
    GW_ERR_UNAVAILABLE = -14, /* a dependency is known to be down: refused without trying */
    GW_ERR_REFUSED = -15,     /* the upstream refused the request itself: asking again will not help */
    GW_ERR_NOT_DURABLE =
        -16,           /* done and on record, but the record may not outlive a crash (a failed fsync) */
    GW_ERR_TIME = -17, /* a time outside the window allowed (a messageTime, on another clock) */
};

/* gw_err_str returns a static name for an error code. */
const char *gw_err_str(int err);

/*
 * The class of a read or an open that failed with errno |e| (struct gw_conf_ctx's |failed|, of the
 * configuration file or of one it names; a local issuer's store): GW_ERR_INVAL where the path, its
 * permissions or its owner say why (no such file, EACCES, EPERM, ENOTDIR, ELOOP, ENAMETOOLONG, EISDIR,
 * ENXIO, ENODEV, EFBIG, EOVERFLOW, EROFS, EINVAL), which only a change to the file or to what it names
 * mends; GW_ERR_NOMEM; else GW_ERR_UNAVAILABLE: a failing disk or descriptors run out (EIO, EMFILE,
 * ENFILE, EAGAIN, EINTR...), which another try may find gone. The one reading of such an errno.
 */
int gw_err_errno_class(int e);
/* For a check whose own failure code is GW_ERR_IO (gw_conf_check_dir, a local issuer's store): GW_ERR_IO
   where gw_err_errno_class(|e|) is GW_ERR_INVAL, the path's, else that class. */
int gw_err_errno_io(int e);

/* The class of a file the gateway writes (cmp.revoked_file, the audit log, handover_socket) that could not
   be judged or opened, |rc| its failure: GW_ERR_NOMEM and GW_ERR_UNAVAILABLE (gw_err_errno_io's: another
   try may mend them) as they are; any other, what the path, its mode, owner or content say, GW_ERR_INVAL. */
int gw_err_file_class(int rc);

#endif
