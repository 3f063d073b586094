import Foundation
import Testing
@testable import Platform

/// guardian runs as its own user beside an application that owns the
/// database. Whichever of guardian's connections creates `-wal`/`-shm`
/// (the replicator, remediation's health and integrity checks), they must
/// end up the application's, or the application fails with SQLITE_CANTOPEN.
/// Real users through setpriv: the app is uid 65534, guardian uid 4242 with
/// only the capabilities its packaged unit has (SQLite itself fixes the
/// owner only when it runs as root, so this test fails without guardian's fix).
@Suite(.serialized) struct SidecarOwnershipTests {
    static let app: uid_t = 65534
    static let guardianUID: uid_t = 4242

    func asApp(_ args: [String]) async throws -> RunResult {
        try await run("/usr/bin/setpriv", ["--reuid", "\(Self.app)", "--regid", "\(Self.app)", "--clear-groups"] + args)
    }

    @Test(.enabled(if: geteuid() == 0), .timeLimit(.minutes(1)))
    func sidecarsCreatedByGuardianBelongToTheApplication() async throws {
        let dir = try TestSupport.makeTempDir("sidecar")
        defer { TestSupport.cleanup(dir) }
        chmod(dir, 0o755)
        let data = dir + "/data"
        mkdir(data, 0o770)
        chown(data, Self.app, Self.app)
        let db = data + "/app.db"
        let made = try await asApp(["/usr/bin/sqlite3", db, "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);"])
        #expect(made.status == 0, "\(made.stderr)")
        chmod(db, 0o660)
        // The app closed last: no sidecars yet.
        #expect(access(db + "-wal", F_OK) != 0 && access(db + "-shm", F_OK) != 0)

        let config = dir + "/guardian.yml"
        try TestSupport.write("""
            state-dir: \(dir)/state
            status:
              socket: \(dir)/guardian.sock
            dbs:
              - path: \(db)
                monitor-interval: 100ms
                remediate: alert-only
                health-interval: 100ms
                integrity-interval: 200ms
                replicas:
                  - url: file://\(dir)/replica
            """, to: config)
        let caps = "+chown,+dac_override,+fowner"
        let child = try await startDaemon(config: config, launcher: [
            "/usr/bin/setpriv", "--reuid", "\(Self.guardianUID)", "--regid", "\(Self.guardianUID)", "--clear-groups",
            "--inh-caps", caps, "--ambient-caps", caps,
        ])
        defer { child.removeFiles(); child.signal(SIGKILL) }
        // Some health and integrity ticks with their own connections.
        try await Task.sleep(for: .milliseconds(800))
        for suffix in ["-wal", "-shm"] {
            var st = stat()
            #expect(stat(db + suffix, &st) == 0, "\(suffix) missing")
            #expect(st.st_uid == Self.app && st.st_gid == Self.app, "\(suffix) belongs to \(st.st_uid):\(st.st_gid)")
        }
        // The application still writes to its database while guardian runs.
        let write = try await asApp(["/usr/bin/sqlite3", db, "INSERT INTO t VALUES (2); SELECT count(*) FROM t;"])
        #expect(write.status == 0 && write.stdout.contains("2"), "app: \(write.stderr)")
        child.signal(SIGTERM)
        #expect(await child.wait(timeout: .seconds(20)) == 0, "\(child.stderr)")
    }

    /// The audit's reproduction: `guardian run` as root (no systemd), a
    /// database of another user (nobody) whose `-wal` is a symbolic link to
    /// a root-owned 0600 file. Within seconds that file was nobody's, 0644.
    @Test(.enabled(if: geteuid() == 0), .timeLimit(.minutes(1)))
    func guardianAsRootNeverHandsALinkedFileToTheApplication() async throws {
        let dir = try TestSupport.makeTempDir("sidecar-root")
        defer { TestSupport.cleanup(dir) }
        chmod(dir, 0o755)
        let data = dir + "/data"
        mkdir(data, 0o770)
        chown(data, Self.app, Self.app)
        let db = data + "/app.db"
        let made = try await asApp(["/usr/bin/sqlite3", db, "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);"])
        #expect(made.status == 0, "\(made.stderr)")
        chmod(db, 0o644)
        let victim = dir + "/victim"
        try Data("secret".utf8).write(to: URL(fileURLWithPath: victim))
        chmod(victim, 0o600)
        #expect(symlink(victim, db + "-wal") == 0)
        let config = dir + "/guardian.yml"
        try TestSupport.write("""
            state-dir: \(dir)/state
            status:
              socket: \(dir)/guardian.sock
            dbs:
              - path: \(db)
                monitor-interval: 100ms
                remediate: alert-only
                health-interval: 100ms
                integrity-interval: 200ms
                replicas:
                  - url: file://\(dir)/replica
            """, to: config)
        let child = try await startDaemon(config: config)
        defer { child.removeFiles(); child.signal(SIGKILL) }
        // Some health and integrity ticks, each with its own connections.
        try await Task.sleep(for: .milliseconds(800))
        child.signal(SIGTERM)
        _ = await child.wait(timeout: .seconds(20))
        var st = stat()
        #expect(stat(victim, &st) == 0)
        #expect(st.st_uid == 0 && st.st_gid == 0 && st.st_mode & 0o777 == 0o600, "victim became \(st.st_uid):\(st.st_gid) \(String(st.st_mode & 0o777, radix: 8))")
        // The real -shm SQLite made is still handed to the application.
        #expect(stat(db + "-shm", &st) != 0 || st.st_uid == Self.app, "-shm belongs to \(st.st_uid)")
    }

    /// The application's directory is the application's: a `-wal` that is
    /// a symbolic link (or a hard link) to another file must not hand that
    /// file to the application's user. Real links to a root-owned 0600 file.
    @Test(.enabled(if: geteuid() == 0))
    func linksPlantedAsSidecarsAreNeverFollowed() throws {
        let dir = try TestSupport.makeTempDir("sidecar-link")
        defer { TestSupport.cleanup(dir) }
        let victim = dir + "/victim"
        let victim2 = dir + "/victim2"
        for p in [victim, victim2] {
            _ = FileManager.default.createFile(atPath: p, contents: Data("secret".utf8))
            chown(p, 0, 0)
            chmod(p, 0o600)
        }
        let db = dir + "/app.db"
        _ = FileManager.default.createFile(atPath: db, contents: nil)
        chown(db, Self.app, Self.app)
        chmod(db, 0o644)
        #expect(symlink(victim, db + "-wal") == 0)
        #expect(link(victim2, db + "-shm") == 0)
        let owner = try #require(SidecarOwner(database: db))
        _ = owner.settle()
        for p in [victim, victim2] {
            var st = stat()
            #expect(stat(p, &st) == 0)
            #expect(st.st_uid == 0 && st.st_gid == 0 && st.st_mode & 0o777 == 0o600, "\(p) became \(st.st_uid):\(st.st_gid) \(String(st.st_mode & 0o777, radix: 8))")
        }
        // Real sidecars (SQLite's own) still get the owner.
        unlink(db + "-wal")
        unlink(db + "-shm")
        for p in [db + "-wal", db + "-shm"] { _ = FileManager.default.createFile(atPath: p, contents: nil) }
        #expect(owner.settle())
        for p in [db + "-wal", db + "-shm"] {
            var st = stat()
            #expect(stat(p, &st) == 0 && owner.matches(st), "\(p) belongs to \(st.st_uid):\(st.st_gid)")
        }
    }

    @Test func theHelperGivesBothFilesTheOwnersIdentity() throws {
        let dir = try TestSupport.makeTempDir("sidecar-unit")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/x.db"
        for p in [db, db + "-wal", db + "-shm"] { _ = FileManager.default.createFile(atPath: p, contents: nil) }
        chmod(db + "-wal", 0o600)
        let owner = SidecarOwner(database: db, uid: getuid(), gid: getgid(), mode: 0o640)
        #expect(owner.settle())
        var st = stat()
        #expect(stat(db + "-wal", &st) == 0 && owner.matches(st))
        unlink(db + "-shm")
        #expect(!owner.settle(), "one of the two is missing: keep watching")
        // The database's own user needs nothing; a file: URI names the file.
        #expect(SidecarOwner(database: db) == nil)
        if geteuid() == 0 {
            chown(db, 65534, 65534)
            #expect(SidecarOwner(database: "file:\(db)?mode=ro")?.uid == 65534)
        }
    }
}
