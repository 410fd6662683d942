/* console.h - the support console's files, embedded at build time
 * (scripts/embed.py over src/console/), served by api.c. */
#ifndef CONSOLE_H
#define CONSOLE_H

#include <stddef.h>

struct console_asset {
	const char *path;         /* URL path, "/" for index.html */
	const char *content_type;
	const unsigned char *data;
	size_t len;
};

extern const struct console_asset console_assets[];
extern const size_t console_assets_count;

#endif
