import Foundation
import Testing
@testable import guardian

/// Litestream's container idioms, with real processes: `guardian restore
/// --if-db-not-exists --if-replica-exists` on start-up, and the application
/// run as guardian's child (`guardian run --exec`, `-- ARGV`, `exec:`):
/// signals forwarded, a final sync when it exits, guardian's exit status is
/// the child's.
@Suite(.serialized) struct ContainerTests {
    struct World {
        let dir: String
        let db: String
        let replica: String
        let config: String

        init(exec: String? = nil) async throws {
            dir = try TestSupport.makeTempDir("container")
            db = dir + "/app.db"
            replica = dir + "/replica"
            config = dir + "/guardian.yml"
            try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('first');")
            var text = """
                state-dir: \(dir)/state
                status:
                  socket: \(dir)/guardian.sock
                dbs:
                  - path: \(db)
                    monitor-interval: 100ms
                    remediate: off
                    replicas:
                      - url: file://\(replica)

                """
            if let exec { text += "exec: \(exec)\n" }
            try TestSupport.write(text, to: config)
        }

        /// The rows of the latest state of the replica.
        func replicated() async throws -> [String] {
            let out = dir + "/check-\(UUID().uuidString.prefix(6)).db"
            let r = try await guardian(["restore", "-o", out, "file://" + replica])
            guard r.status == 0 else { throw TestFailure("restore: \(r.stderr)") }
            return try await sqlite3(out, "SELECT v FROM t ORDER BY rowid;").split(separator: "\n").map(String.init)
        }

        func run(_ extra: [String]) throws -> ChildProcess {
            try ChildProcess.start(TestSupport.guardianBinary, ["run", "--config", config, "--log-target", "stderr"] + extra)
        }
    }

    @Test func shellWordsSplitLikeAShell() throws {
        let cases: [(String, [String])] = [
            ("app serve", ["app", "serve"]),
            ("  app   serve --port 8080 ", ["app", "serve", "--port", "8080"]),
            ("sh -c 'echo $HOME; exit 3'", ["sh", "-c", "echo $HOME; exit 3"]),
            (#"app "a b" c\ d"#, ["app", "a b", "c d"]),
            (#"app "say \"hi\" \n" ''"#, ["app", #"say "hi" \n"#, ""]),
            ("", []),
        ]
        for (line, words) in cases { #expect(try ShellWords.split(line) == words, "\(line)") }
        #expect(throws: ShellWords.Unterminated.self) { try ShellWords.split("app 'open") }
        #expect(throws: ShellWords.Unterminated.self) { try ShellWords.split("app \\") }
    }

    @Test func execKeyIsReadLikeLitestreamsOrAsAList() throws {
        let base = "dbs:\n  - path: /data/app.db\n"
        #expect(try GuardianConfig.parse(text: base + "exec: app serve --port 8080\n", file: "g.yml").exec == ["app", "serve", "--port", "8080"])
        #expect(try GuardianConfig.parse(text: base + "exec: [\"/usr/bin/app\", \"a b\"]\n", file: "g.yml").exec == ["/usr/bin/app", "a b"])
        #expect(try GuardianConfig.parse(text: base, file: "g.yml").exec == nil)
        for bad in ["exec: \"app 'x\"\n", "exec: \"\"\n"] {
            let e = #expect(throws: ConfigError.self) { try GuardianConfig.parse(text: base + bad, file: "g.yml") }
            #expect(e?.description.hasPrefix("g.yml:3: exec:") == true, "\(String(describing: e))")
        }
    }

    /// The child writes, then exits 7: guardian replicates that write before
    /// it exits, with status 7.
    @Test func guardianExitsWithTheChildsStatusAfterAFinalSync() async throws {
        let w0 = try await World()
        defer { TestSupport.cleanup(w0.dir) }
        let script = "sleep 0.3; sqlite3 \(w0.db) \"INSERT INTO t VALUES ('from child')\"; exit 7"
        // exec: from the configuration, as a Litestream config writes it.
        try TestSupport.write(try String(contentsOfFile: w0.config, encoding: .utf8) + "exec: sh -c \"\(script.replacingOccurrences(of: "\"", with: "\\\""))\"\n", to: w0.config)
        let g = try w0.run([])
        defer { g.removeFiles() }
        let status = await g.wait(timeout: .seconds(30))
        #expect(status == 7, "stderr: \(g.stderr)")
        #expect(try await w0.replicated() == ["first", "from child"])
        #expect(g.stderr.contains("the application run by guardian exited command=sh status=\"exit 7\""), "\(g.stderr)")
    }

    /// SIGTERM and SIGINT go to the child, not to guardian: the child's own
    /// shutdown writes are replicated, then guardian exits with its status.
    @Test(arguments: [SIGTERM, SIGINT])
    func stopSignalsAreForwardedToTheChild(signal: Int32) async throws {
        let w = try await World()
        defer { TestSupport.cleanup(w.dir) }
        let marker = w.dir + "/started"
        let child = "trap 'sqlite3 \(w.db) \"INSERT INTO t VALUES (\\\"on signal\\\")\"; exit 3' TERM INT; touch \(marker); while :; do sleep 0.05; done"
        let g = try ChildProcess.start(
            TestSupport.guardianBinary, ["run", "--config", w.config, "--log-target", "stderr", "--", "/bin/sh", "-c", "env > \(w.dir)/env; " + child],
            environment: ["APP_API_KEY": "app-key-1", "NOTIFY_SOCKET": w.dir + "/no-such-socket"])
        defer { g.removeFiles() }
        #expect(await TestSupport.waitUntil(timeout: .seconds(20)) { FileManager.default.fileExists(atPath: marker) }, "\(g.stderr)")
        g.signal(signal)
        let status = await g.wait(timeout: .seconds(30))
        #expect(status == 3, "stderr: \(g.stderr)")
        #expect(try await w.replicated() == ["first", "on signal"])
        // The application's environment is its own (secrets too); systemd's
        // notify socket is guardian's alone.
        let env = try String(contentsOfFile: w.dir + "/env", encoding: .utf8)
        #expect(env.contains("APP_API_KEY=app-key-1") && !env.contains("NOTIFY_SOCKET"), "\(env)")
    }

    /// A reload (SIGHUP) starts a new generation of guardian's services but
    /// leaves the application running.
    @Test func reloadLeavesTheChildRunning() async throws {
        let w = try await World()
        defer { TestSupport.cleanup(w.dir) }
        let pids = w.dir + "/pids"
        let g = try w.run(["--exec", "/bin/sh -c 'echo $$ >> \(pids); exec sleep 30'"])
        defer { g.removeFiles() }
        #expect(await TestSupport.waitUntil(timeout: .seconds(20)) { FileManager.default.fileExists(atPath: pids) })
        g.signal(SIGHUP)
        #expect(await TestSupport.waitUntil(timeout: .seconds(10)) { g.stderr.contains("configuration reloaded") }, "\(g.stderr)")
        try await sqlite3(w.db, "INSERT INTO t VALUES ('after reload');")
        #expect(await TestSupport.waitUntil(timeout: .seconds(10)) { (try? await w.replicated()) == ["first", "after reload"] })
        #expect(try String(contentsOfFile: pids, encoding: .utf8).split(separator: "\n").count == 1, "started once")
        g.signal(SIGTERM)
        // sleep dies of SIGTERM: 128 + 15.
        #expect(await g.wait(timeout: .seconds(30)) == 143, "\(g.stderr)")
    }

    @Test func restoreOnlyWhenNeeded() async throws {
        let w = try await World()
        defer { TestSupport.cleanup(w.dir) }
        let out = w.dir + "/restored.db"
        // An empty (new) replica: nothing to restore, not an error.
        let empty = try await guardian(["restore", "--if-db-not-exists", "--if-replica-exists", "-o", out, "file://\(w.dir)/new-replica"])
        #expect(empty.status == 0, "\(empty.stderr)")
        #expect(empty.stdout.contains("holds no restore point: nothing restored"))
        #expect(!FileManager.default.fileExists(atPath: out))
        let strict = try await guardian(["restore", "-o", out, "file://\(w.dir)/new-replica"])
        #expect(strict.status == 1, "without the flag an empty replica is an error")

        // A replica with data.
        let g = try w.run([])
        #expect(await TestSupport.waitUntil(timeout: .seconds(20)) { (try? await w.replicated()) == ["first"] })
        g.signal(SIGTERM)
        #expect(await g.wait() == 0)
        g.removeFiles()
        let first = try await guardian(["restore", "--if-db-not-exists", "--if-replica-exists", "-o", out, "file://" + w.replica])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(try await sqlite3(out, "SELECT v FROM t;") == "first")
        // The database is there now: left alone, whatever the replica holds.
        try await sqlite3(out, "INSERT INTO t VALUES ('local');")
        let second = try await guardian(["restore", "--if-db-not-exists", "-o", out, "file://" + w.replica])
        #expect(second.status == 0)
        #expect(second.stdout.contains("exists: nothing restored"))
        #expect(try await sqlite3(out, "SELECT v FROM t ORDER BY rowid;") == "first\nlocal")

        // DB_PATH of the configuration: OUT defaults to it.
        let moved = w.db + ".bak"
        #expect(rename(w.db, moved) == 0)
        for s in ["-wal", "-shm"] { unlink(w.db + s) }
        let byPath = try await guardian(["restore", "--config", w.config, "--if-db-not-exists", w.db])
        #expect(byPath.status == 0, "\(byPath.stderr)")
        #expect(try await sqlite3(w.db, "SELECT v FROM t;") == "first")

        // An unreachable replica is not an empty one.
        let port = TestSupport.freePort()
        let gone = try await guardian(
            ["restore", "--if-replica-exists", "-o", w.dir + "/never.db", "s3://bucket/app?endpoint=http://127.0.0.1:\(port)"],
            environment: ["AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"])
        #expect(gone.status != 0, "\(gone.stdout)")
        #expect(!FileManager.default.fileExists(atPath: w.dir + "/never.db"))
        #expect(try await guardian(["restore", "file://" + w.replica]).status == 2, "-o is required with a URL")
    }

    /// contrib/docker/entrypoint.sh as a container runs it: the first start
    /// restores the database from the replica and runs the application; the
    /// next start leaves the database alone.
    @Test func dockerEntrypointRestoresOnFirstStartOnly() async throws {
        let w = try await World()
        defer { TestSupport.cleanup(w.dir) }
        let g = try w.run([])
        #expect(await TestSupport.waitUntil(timeout: .seconds(20)) { (try? await w.replicated()) == ["first"] })
        g.signal(SIGTERM)
        #expect(await g.wait() == 0)
        g.removeFiles()
        // A fresh volume: the database is gone.
        for s in ["", "-wal", "-shm"] { unlink(w.db + s) }
        let entrypoint = TestSupport.packageRoot + "/contrib/docker/entrypoint.sh"
        let bin = (TestSupport.guardianBinary as NSString).deletingLastPathComponent
        let env = ["PATH": "\(bin):/usr/bin:/bin", "GUARDIAN_CONFIG": w.config, "GUARDIAN_DB": w.db]
        let app = ["/bin/sh", "-c", "sqlite3 \(w.db) 'SELECT count(*) FROM t' > \(w.dir)/count; exit 5"]
        let start1 = try await run(entrypoint, app, environment: env)
        #expect(start1.status == 5, "\(start1.stderr)")
        #expect(try String(contentsOfFile: w.dir + "/count", encoding: .utf8) == "1\n")
        #expect(start1.stdout.contains("restored \(w.db)"), "\(start1.stdout)")
        let start2 = try await run(entrypoint, app, environment: env)
        #expect(start2.status == 5)
        #expect(start2.stdout.contains("exists: nothing restored"), "\(start2.stdout)")
    }
}
