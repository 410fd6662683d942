#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static atomic_ulong counters[METRIC__COUNT];
static atomic_ulong results[MT_E__COUNT];

static const char *const names[METRIC__COUNT] = {
#define METRIC_NAME(name, help) #name,
	METRIC_MAP(METRIC_NAME)
#undef METRIC_NAME
};
static const char *const helps[METRIC__COUNT] = {
#define METRIC_HELP(name, help) help,
	METRIC_MAP(METRIC_HELP)
#undef METRIC_HELP
};
static const char *const err_names[MT_E__COUNT] = {
#define ERR_NAME(name, status, reason) #name,
	MT_ERR_MAP(ERR_NAME)
#undef ERR_NAME
};

void metrics_add(enum metric m, unsigned long n)
{
	atomic_fetch_add_explicit(&counters[m], n, memory_order_relaxed);
}

void metrics_count_result(enum mt_err err)
{
	if (err < MT_E__COUNT)
		atomic_fetch_add_explicit(&results[err], 1, memory_order_relaxed);
}

char *metrics_render(size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	if (!f)
		return NULL;
	for (int i = 0; i < METRIC__COUNT; i++)
		fprintf(f, "# HELP mailtrail_%s %s\n# TYPE mailtrail_%s counter\nmailtrail_%s %lu\n",
			names[i], helps[i], names[i], names[i],
			atomic_load_explicit(&counters[i], memory_order_relaxed));
	fprintf(f, "# HELP mailtrail_sns_results_total SNS deliveries by outcome\n"
		   "# TYPE mailtrail_sns_results_total counter\n");
	for (int i = 0; i < MT_E__COUNT; i++)
		fprintf(f, "mailtrail_sns_results_total{result=\"%s\",status=\"%u\"} %lu\n",
			err_names[i], mt_err_http_status((enum mt_err)i),
			atomic_load_explicit(&results[i], memory_order_relaxed));
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
