/* SPDX-License-Identifier: MIT */
/*
 * conn.h - zoc-perf conn: TCP connections per second through a stateful
 * switch (conn.c has the details).
 */
#ifndef ZOC_PERF_CONN_H
#define ZOC_PERF_CONN_H

/* argv[0] is "conn". Exit status: 0, 1 (failure), 2 (usage). */
int zoc_perf_cmd_conn(int argc, char **argv);

#endif
