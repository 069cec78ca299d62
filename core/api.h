/* api.h: what every export file shares. Exports are declared in abi.h
 * (generated from abi.json); every one that takes a handle refuses 0 with a
 * message naming the export, instead of reading address 0. */
#ifndef REALM_API_H
#define REALM_API_H
#include "rt.h"

#define API_NEED(h, what, ret) do { \
        if (!(h)) { rt_err(__func__, ": null " what " handle (closed or never opened)", NULL); return ret; } \
    } while (0)
#define NEED_MODEL(m, ret) API_NEED(m, "model", ret)
#define NEED_SESSION(s, ret) API_NEED(s, "session", ret)
#define NEED_SAMPLER(s, ret) API_NEED(s, "sampler", ret)

#endif
