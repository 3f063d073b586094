#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-bus.h>
#include <sys/uio.h>
static inline int csd_journal_sendv(const struct iovec *iov, int n) { return sd_journal_sendv(iov, n); }
