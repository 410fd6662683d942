/* confirm.h - confirming an SNS subscription by visiting its SubscribeURL. */
#ifndef CONFIRM_H
#define CONFIRM_H

#include "fetch.h"
#include "mt_error.h"

/* Longest confirmation response read (SNS answers with a small XML). */
#define CONFIRM_RESPONSE_MAX (64 * 1024)

/* GETs url (which passed url_check as URL_SUBSCRIBE).  MT_E_OK on a 2xx
 * answer, MT_E_CONFIRM otherwise (transient: SNS will send the
 * confirmation again); errbuf then says why. */
enum mt_err confirm_subscription(const char *url, const struct fetch_opts *o,
				 char *errbuf, size_t errsz);

#endif
