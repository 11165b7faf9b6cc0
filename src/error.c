/* src/error.c - mp_strerror and mp_err_name, generated from MP_ERRNO_MAP. */
#include <errno.h>
#include <string.h>

#include "internal/core.h"

struct err_entry {
    int code;
    const char *name;
    const char *msg;
};

static const struct err_entry err_table[] = {
#define MP__OWN(name, value, msg) { value, #name, msg },
    MP_OWN_ERROR_MAP(MP__OWN)
#undef MP__OWN
#define MP__SYS(name, value, msg) { -(value), #name, msg },
    MP_ERRNO_MAP(MP__SYS)
#undef MP__SYS
};

static const struct err_entry *find(int err)
{
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
        if (err_table[i].code == err)
            return &err_table[i];
    return NULL;
}

const char *mp_strerror(int err)
{
    if (err == 0)
        return "success";
    const struct err_entry *e = find(err);
    if (e)
        return e->msg;
    if (err < 0 && err > -4096) {
        /* any other -errno: glibc's static description (never formats) */
        const char *d = strerrordesc_np(-err);
        if (d)
            return d;
    }
    return "unknown error";
}

const char *mp_err_name(int err)
{
    if (err == 0)
        return "OK";
    const struct err_entry *e = find(err);
    if (e)
        return e->name;
    if (err < 0 && err > -4096) {
        const char *n = strerrorname_np(-err);
        if (n)
            return n;
    }
    return "unknown";
}
