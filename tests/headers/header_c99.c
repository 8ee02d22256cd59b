/* SPDX-License-Identifier: Apache-2.0 */
/* The umbrella header alone, as strict C99. */
#include <rolayer.h>
int rolayer_header_c99_probe(void) { return ROLAYER_VERSION_NUMBER + ROLAYER_EUNSUPPORTED; }
