/* rolayer/version.h: compile-time and run-time version of librolayer. */
#ifndef ROLAYER_VERSION_H
#define ROLAYER_VERSION_H

#include "common.h"

#define ROLAYER_VERSION_MAJOR 0
#define ROLAYER_VERSION_MINOR 1
#define ROLAYER_VERSION_PATCH 0
#define ROLAYER_VERSION_NUMBER (ROLAYER_VERSION_MAJOR * 10000 + ROLAYER_VERSION_MINOR * 100 + ROLAYER_VERSION_PATCH)
#define ROLAYER_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* The ROLAYER_VERSION_NUMBER the loaded library was built with. Compare with the header's. */
ROLAYER_API int rolayer_version(void);
/* The version as "MAJOR.MINOR.PATCH" (static). */
ROLAYER_API const char *rolayer_version_string(void);

#ifdef __cplusplus
}
#endif
#endif /* ROLAYER_VERSION_H */
