/* Durable writes, done one way everywhere: data is fsynced, the name
 * appears by rename, and the directory holding it is fsynced too, so after
 * a crash a file is either absent or whole. */
#ifndef EMBER_DURABLE_H
#define EMBER_DURABLE_H

#include "error.h"

/* fsyncs the directory `dir` (making renames and creations in it
 * durable).  -1 with err. */
int ember_fsync_directory(const char *dir, struct ember_error *err);

#endif
