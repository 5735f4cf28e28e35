/*
 * The DER walk the OpenSSL 3.0 shim's files share (shim.c, shim_itav.c): bounded TLV reads over
 * public i2d output and received bytes, and one TLV built around parts.
 */
#ifndef GW_CMP_SHIM_LOCAL_H
#define GW_CMP_SHIM_LOCAL_H

/* One TLV inside [p, end): its whole encoding is [p, p+total), its content [cont, cont+len). */
struct cmp_tlv {
    const unsigned char *p, *cont;
    long len, total;
    int tag, cls, constructed;
};

/* Reads the TLV at *pp (bounded by |end|), advances *pp past it. 1 on success, 0 at end or on bad DER. */
int cmp_tlv_next(const unsigned char **pp, const unsigned char *end, struct cmp_tlv *t);

/* Opens the outer SEQUENCE of |der|: on success [*pp, *end) is its content and nothing trails it. */
int cmp_der_open_seq(const unsigned char *der, long len, const unsigned char **pp, const unsigned char **end);

/* One TLV around |n| concatenated |parts| (each |lens| bytes; a NULL part is skipped). OPENSSL_malloc'ed. */
unsigned char *cmp_der_wrap(int tag, int cls, unsigned char *const *parts, const int *lens, int n,
                            int *out_len);

#endif
