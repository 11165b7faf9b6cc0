/* mproc/version.h - the library version, kept here and nowhere else.
 *
 * CMake reads these three numbers with a regex; mp_version() reports the
 * version of the library actually loaded at run time, which can differ from
 * the header a program was compiled against.  The shared library's SONAME is
 * libmproc.so.MP_VERSION_MAJOR: the ABI only breaks with the major number.
 */
#ifndef MPROC_VERSION_H
#define MPROC_VERSION_H

#define MP_VERSION_MAJOR 0
#define MP_VERSION_MINOR 1
#define MP_VERSION_PATCH 0

#define MP_VERSION_HEX \
    ((MP_VERSION_MAJOR << 16) | (MP_VERSION_MINOR << 8) | MP_VERSION_PATCH)

#endif
