/* src/version.c - the version of the library that is actually loaded. */
#include "internal/core.h"

#define MP__STR2(x) #x
#define MP__STR(x) MP__STR2(x)

const char *mp_version(void)
{
    return MP__STR(MP_VERSION_MAJOR) "." MP__STR(MP_VERSION_MINOR) "." MP__STR(MP_VERSION_PATCH);
}

unsigned mp_version_hex(void)
{
    return MP_VERSION_HEX;
}
