#include <sqlite3.h>
// SQLITE_TRANSIENT is a cast macro Swift cannot import.
static inline sqlite3_destructor_type csqlite_transient(void) { return SQLITE_TRANSIENT; }
static inline int csqlite_busy_timeout(sqlite3 *db, int ms) { return sqlite3_busy_timeout(db, ms); }
static inline int csqlite_persist_wal(sqlite3 *db, int on) {
    return sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &on);
}
// Closing guardian's connections must never checkpoint and delete the WAL:
// the frames in it are how guardian resumes without a full image.
static inline int csqlite_no_checkpoint_on_close(sqlite3 *db) {
    return sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)0);
}

// No initial bulk allocation of page-cache memory per connection (SQLite
// otherwise allocates 20 pages, ~88 KB of private memory, on a connection's
// first statement, and guardian holds three connections per database that
// read a page or two). Must run before the library initialises (the first
// open); afterwards it returns SQLITE_MISUSE and changes nothing.
static inline int csqlite_no_bulk_page_cache(void) {
    return sqlite3_config(SQLITE_CONFIG_PAGECACHE, (void *)0, 0, 0);
}

// A busy handler that tries again every 100 µs, `tries` times at most: to
// take the write lock between two of a busy application's transactions
// (sqlite3_busy_timeout sleeps 1, 2, 5, 10... ms between tries, and a
// writer that commits thousands of times a second wins every one of them).
#include <stdint.h>
#include <time.h>
static int csqlite_spin_busy_cb(void *arg, int count) {
    if (count >= (int)(intptr_t)arg) return 0;
    struct timespec ts = { 0, 100000 };
    nanosleep(&ts, 0);
    return 1;
}
static inline int csqlite_spin_busy(sqlite3 *db, int tries) {
    return sqlite3_busy_handler(db, csqlite_spin_busy_cb, (void *)(intptr_t)tries);
}
