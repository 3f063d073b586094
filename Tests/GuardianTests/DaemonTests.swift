import Foundation
@testable import Platform
import Testing
@testable import guardian

/// `guardian run` as systemd sees it: sd_notify over a real datagram socket,
/// the status socket, SIGHUP reload and SIGTERM shutdown.
@Suite struct DaemonTests {
    struct Fixture {
        let dir: String
        let config: String
        let db: String
        let socket: String

        init(extraDB: Bool = false) async throws {
            dir = try TestSupport.makeTempDir("daemon")
            db = dir + "/app.db"
            socket = dir + "/guardian.sock"
            config = dir + "/guardian.yml"
            try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users(name) VALUES ('ada');")
            try write(dbs: [db])
        }

        func write(dbs: [String], broken: Bool = false) throws {
            var text = "status:\n  socket: \(socket)\nstate-dir: \(dir)/state\ndbs:\n"
            for d in dbs { text += "  - path: \(d)\n    monitor-interval: 100ms\n" }
            if broken { text += "  - path: not/absolute.db\n" }
            try TestSupport.write(text, to: config)
        }
    }

    @Test func notifiesReadyStatusWatchdogStoppingInOrder() async throws {
        let f = try await Fixture()
        defer { TestSupport.cleanup(f.dir) }
        let receiver = try NotifyReceiver(path: f.dir + "/notify.sock")
        defer { receiver.close() }
        let child = try ChildProcess.start(
            TestSupport.guardianBinary, ["run", "--config", f.config, "--log-target", "stderr"],
            environment: ["NOTIFY_SOCKET": receiver.path, "WATCHDOG_USEC": "400000"])
        defer { child.removeFiles() }
        let pinged = await TestSupport.waitUntil { receiver.messages.filter { $0.contains("WATCHDOG=1") }.count >= 2 }
        #expect(pinged, "no watchdog pings; got \(receiver.messages); stderr: \(child.stderr)")
        child.signal(SIGTERM)
        let status = await child.wait(timeout: .seconds(20))
        #expect(status == 0, "stderr: \(child.stderr)")
        let messages = receiver.messages
        let ready = messages.firstIndex { $0.contains("READY=1") }
        let firstWatchdog = messages.firstIndex { $0.contains("WATCHDOG=1") }
        let stopping = messages.firstIndex { $0.contains("STOPPING=1") }
        #expect(ready != nil && firstWatchdog != nil && stopping != nil, "\(messages)")
        if let ready, let firstWatchdog, let stopping {
            #expect(ready < firstWatchdog && firstWatchdog < stopping, "\(messages)")
            #expect(messages[ready].contains("STATUS=ready: 1/1 databases open"), "\(messages[ready])")
            #expect(messages[stopping...].allSatisfy { !$0.contains("WATCHDOG=1") } || stopping == messages.count - 1)
        }
    }

    @Test func statusJSONDescribesTheRunningDaemon() async throws {
        let f = try await Fixture()
        defer { TestSupport.cleanup(f.dir) }
        let child = try ChildProcess.start(TestSupport.guardianBinary, ["run", "--config", f.config, "--log-target", "stderr"])
        defer { child.removeFiles(); child.signal(SIGKILL) }
        var doc: [String: Any] = [:]
        let up = try await TestSupport.waitUntil {
            let r = try await guardian(["status", "--config", f.config, "--json"])
            guard r.status == 0, let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else { return false }
            doc = obj
            return (obj["state"] as? String) == "ready"
        }
        #expect(up, "daemon never became ready: \(child.stderr)")
        #expect(doc["version"] as? String == GuardianVersion.string)
        #expect(doc["pid"] as? Int == Int(child.pid))
        #expect(doc["config"] as? String == f.config)
        #expect((doc["uptime_seconds"] as? Double ?? -1) >= 0)
        let dbs = doc["databases"] as? [[String: Any]] ?? []
        #expect(dbs.count == 1)
        #expect(dbs.first?["path"] as? String == f.db)
        #expect(dbs.first?["state"] as? String == "open")
        #expect(dbs.first?["page_size"] as? Int == 4096)
        #expect(dbs.first?["wal_size"] is Int)

        // The readable table names the database too.
        let table = try await guardian(["status", "--socket", f.socket])
        #expect(table.status == 0)
        #expect(table.stdout.contains(f.db) && table.stdout.contains("[open]"))

        child.signal(SIGTERM)
        #expect(await child.wait() == 0)
        let gone = try await guardian(["status", "--socket", f.socket])
        #expect(gone.status == 3)
        #expect(gone.stderr == "guardian: guardian is not running (no daemon answers at \(f.socket))\n")
    }

    @Test func sighupReloadsOrKeepsTheOldConfig() async throws {
        let f = try await Fixture()
        defer { TestSupport.cleanup(f.dir) }
        let second = f.dir + "/second.db"
        try await sqlite3(second, "PRAGMA journal_mode=wal; CREATE TABLE t(x);")
        let receiver = try NotifyReceiver(path: f.dir + "/notify.sock")
        defer { receiver.close() }
        let child = try ChildProcess.start(
            TestSupport.guardianBinary, ["run", "--config", f.config, "--log-target", "stderr"],
            environment: ["NOTIFY_SOCKET": receiver.path])
        defer { child.removeFiles(); child.signal(SIGKILL) }
        #expect(await TestSupport.waitUntil { receiver.messages.contains { $0.contains("READY=1") } })

        // A broken file is refused; the daemon keeps running on the old one.
        try f.write(dbs: [f.db], broken: true)
        child.signal(SIGHUP)
        #expect(await TestSupport.waitUntil { child.stderr.contains("new configuration refused") }, "\(child.stderr)")
        #expect(child.stderr.contains("must be an absolute path"))
        let still = try await guardian(["status", "--socket", f.socket, "--json"])
        #expect(still.status == 0)

        // A good file is taken: RELOADING, then READY with both databases.
        try f.write(dbs: [f.db, second])
        child.signal(SIGHUP)
        let reloaded = try await TestSupport.waitUntil {
            let r = try await guardian(["status", "--socket", f.socket, "--json"])
            return r.status == 0 && r.stdout.contains(second) && r.stdout.contains("\"state\" : \"ready\"")
        }
        #expect(reloaded, "\(child.stderr)")
        let messages = receiver.messages
        let reloading = messages.firstIndex { $0.contains("RELOADING=1") }
        let lastReady = messages.lastIndex { $0.contains("READY=1") }
        #expect(reloading != nil && lastReady != nil && reloading! < lastReady!, "\(messages)")
        child.signal(SIGTERM)
        #expect(await child.wait() == 0)
    }

    /// A reload with a duration too long to count (`retention: 1000000d`)
    /// is refused with the key and line; the daemon keeps running on the
    /// old configuration (it used to die on an overflow trap).
    @Test func sighupWithADurationTooLongToCountKeepsTheOldConfig() async throws {
        let f = try await Fixture()
        defer { TestSupport.cleanup(f.dir) }
        let child = try ChildProcess.start(TestSupport.guardianBinary, ["run", "--config", f.config, "--log-target", "stderr"])
        defer { child.removeFiles(); child.signal(SIGKILL) }
        let up = try await TestSupport.waitUntil {
            let r = try await guardian(["status", "--socket", f.socket, "--json"])
            return r.status == 0 && r.stdout.contains("\"state\" : \"ready\"")
        }
        #expect(up, "\(child.stderr)")

        try TestSupport.write(
            "status:\n  socket: \(f.socket)\nstate-dir: \(f.dir)/state\ndbs:\n  - path: \(f.db)\n    monitor-interval: 100ms\n    retention: 1000000d\n",
            to: f.config)
        child.signal(SIGHUP)
        #expect(await TestSupport.waitUntil { child.stderr.contains("new configuration refused") }, "\(child.stderr)")
        #expect(child.stderr.contains("\(f.config):7: dbs[0].retention: \"1000000d\" is too long"), "\(child.stderr)")
        #expect(child.process.isRunning, "the daemon died: \(child.stderr)")
        let still = try await guardian(["status", "--socket", f.socket, "--json"])
        #expect(still.status == 0 && still.stdout.contains(f.db), "\(still.stderr)")
        child.signal(SIGTERM)
        #expect(await child.wait() == 0)
    }

    /// Status clients still queued when a reload stops the status socket
    /// are closed, not leaked: each sees its connection closed, and the
    /// daemon holds no more descriptors after several reloads than before.
    @Test(.timeLimit(.minutes(3)))
    func reloadsCloseQueuedStatusClients() async throws {
        let f = try await Fixture()
        defer { TestSupport.cleanup(f.dir) }
        let receiver = try NotifyReceiver(path: f.dir + "/notify.sock")
        defer { receiver.close() }
        let child = try ChildProcess.start(
            TestSupport.guardianBinary, ["run", "--config", f.config, "--log-target", "stderr"],
            environment: ["NOTIFY_SOCKET": receiver.path])
        defer { child.removeFiles(); child.signal(SIGKILL) }
        func readies() -> Int { receiver.messages.filter { $0.contains("READY=1") }.count }
        func reload() async -> Bool {
            let before = readies()
            child.signal(SIGHUP)
            return await TestSupport.waitUntil(timeout: .seconds(30)) { readies() > before }
        }
        func descriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(child.pid)/fd").count) ?? -1 }
        #expect(await TestSupport.waitUntil { readies() == 1 }, "\(child.stderr)")
        // One reload first, so that what a first reload opens for good is counted.
        #expect(await reload(), "\(child.stderr)")
        try await Task.sleep(for: .milliseconds(500))
        let before = descriptors()
        let path = f.socket
        for round in 1...3 {
            // Five silent clients: the status loop waits for the first one's
            // request line; the others queue behind it.
            let clients = try await BlockingPool.shared.run { () throws -> [Int32] in
                try (0..<5).map { _ in
                    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                    var addr = try UnixSocketServer.address(path)
                    let rc = withUnsafePointer(to: &addr) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                    }
                    guard rc == 0 else { throw SystemError("connect", path: path) }
                    return fd
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            #expect(await reload(), "round \(round): \(child.stderr)")
            let closed = await BlockingPool.shared.run { clients.map { SocketListenerTests.seesClose($0, within: .seconds(5)) } }
            for fd in clients { close(fd) }
            #expect(closed == [true, true, true, true, true], "round \(round): a queued client was never closed")
        }
        try await Task.sleep(for: .milliseconds(500))
        let after = descriptors()
        #expect(before > 0 && after <= before + 2, "descriptors: \(before) before three reloads, \(after) after")
        child.signal(SIGTERM)
        #expect(await child.wait() == 0)
    }
}
