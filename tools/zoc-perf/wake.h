/* SPDX-License-Identifier: MIT */
/*
 * wake.h - zoc-perf wake: the CPU a server thread spends per sleep/wake
 * round trip on this machine (wake.c has the details).
 */
#ifndef ZOC_PERF_WAKE_H
#define ZOC_PERF_WAKE_H

/* argv[0] is "wake". Exit status: 0, 1 (failure), 2 (usage). */
int zoc_perf_cmd_wake(int argc, char **argv);

#endif
