import Foundation
import Testing
@testable import Platform

/// Closing any descriptor of a database file drops the record locks this
/// process's SQLite connections hold on it. The application's last
/// connection then takes the exclusive lock, checkpoints and deletes the WAL
/// under guardian's feet (the cause of a spurious "corruption" incident the
/// packaging test found). `DatabaseFiles` reads the file without that.
@Suite(.serialized) struct DatabaseFilesTests {
    /// The application: another process that writes and closes its connection.
    func appWritesAndCloses(_ db: String) async throws {
        try await sqlite3(db, "INSERT INTO t VALUES (randomblob(100));")
    }

    func fixture() async throws -> (dir: String, db: String, guardianConnection: SQLiteConnection) {
        let dir = try TestSupport.makeTempDir("dbfiles")
        let db = dir + "/app.db"
        try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE t(x);")
        // guardian's connection, open and idle (WAL mode: it holds its shared lock).
        let c = try SQLiteConnection(path: db)
        c.persistWAL()
        _ = try c.scalar("SELECT count(*) FROM t")
        try await appWritesAndCloses(db)
        #expect(access(db + "-wal", F_OK) == 0, "the WAL stays while guardian's connection is open")
        return (dir, db, c)
    }

    @Test func openingAndClosingTheFileLetsTheAppDeleteTheWAL() async throws {
        // The hazard itself, so the test below means something.
        let f = try await fixture()
        defer { TestSupport.cleanup(f.dir) }
        let fd = open(f.db, O_RDONLY)
        #expect(fd >= 0)
        close(fd)
        try await appWritesAndCloses(f.db)
        #expect(access(f.db + "-wal", F_OK) != 0, "closing a descriptor dropped guardian's lock; the app deleted the WAL")
        withExtendedLifetime(f.guardianConnection) {}
    }

    @Test func readingThroughDatabaseFilesKeepsTheLocks() async throws {
        let f = try await fixture()
        defer { TestSupport.cleanup(f.dir) }
        let files = DatabaseFiles()
        for _ in 0..<5 {
            #expect(Array(files.prefix(f.db, count: 16)) == Array("SQLite format 3\0".utf8))
            try await appWritesAndCloses(f.db)
        }
        #expect(access(f.db + "-wal", F_OK) == 0, "the WAL was deleted: guardian's lock was dropped")
        #expect(try f.guardianConnection.scalar("PRAGMA quick_check") == .text("ok"))
        #expect(try f.guardianConnection.scalar("SELECT count(*) FROM t") == .integer(6))

        // Another file put at the path (a restore's swap) gets a new
        // descriptor; the old one stays valid for whoever still holds it and
        // is closed only when the last holder lets go.
        var first: DatabaseFile? = try files.file(f.db)
        let firstFD = try #require(first?.fd)
        #expect(try files.file(f.db) === first)
        let before = first?.read(count: 16, at: 0)
        let copy = f.dir + "/copy.db"
        try await sqlite3(f.db, "VACUUM INTO '\(copy)'")
        #expect(rename(copy, f.db) == 0)
        let second = try files.file(f.db)
        #expect(second !== first)
        var a = stat()
        var b = stat()
        #expect(fstat(second.fd, &a) == 0 && stat(f.db, &b) == 0 && a.st_ino == b.st_ino)
        #expect(fcntl(firstFD, F_GETFD) >= 0, "the replaced file's descriptor is still open for its holder")
        #expect(first?.read(count: 16, at: 0) == before)
        first = nil
        #expect(fcntl(firstFD, F_GETFD) == -1, "closed once released")
        withExtendedLifetime(f.guardianConnection) {}
    }
}
