#include <sqlite3.h>
// SQLITE_TRANSIENT is a cast macro Swift cannot import.
static inline sqlite3_destructor_type csqlite_transient(void) { return SQLITE_TRANSIENT; }
static inline int csqlite_busy_timeout(sqlite3 *db, int ms) { return sqlite3_busy_timeout(db, ms); }
static inline int csqlite_persist_wal(sqlite3 *db, int on) {
    return sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &on);
}
