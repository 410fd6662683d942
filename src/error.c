#include "mt_error.h"

const char *mt_err_str(enum mt_err err)
{
	switch (err) {
#define MT_ERR_STR(name, status, reason)                                       \
	case MT_E_##name:                                                      \
		return reason;
		MT_ERR_MAP(MT_ERR_STR)
#undef MT_ERR_STR
	case MT_E__COUNT:
		break;
	}
	return "unknown error";
}

unsigned mt_err_http_status(enum mt_err err)
{
	switch (err) {
#define MT_ERR_STATUS(name, status, reason)                                    \
	case MT_E_##name:                                                      \
		return status;
		MT_ERR_MAP(MT_ERR_STATUS)
#undef MT_ERR_STATUS
	case MT_E__COUNT:
		break;
	}
	return 500;
}
